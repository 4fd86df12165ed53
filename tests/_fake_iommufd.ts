// A /dev/iommu for host tests: IOAS alloc, map and unmap, HWPT alloc (with
// dirty tracking, or refused as an IOMMU without dirty bits refuses it),
// SET_DIRTY_TRACKING and GET_DIRTY_BITMAP (NO_CLEAR included) over a set of
// dirty 4 KiB IOVA pages that the test's "device" writes. Everything else
// (mmap of the bitmap buffer, other paths) goes to the real syscalls.
import { EINVAL, ENOENT, EOPNOTSUPP } from "../sys/errno.ts";
import { IoctlError } from "../sys/errors.ts";
import { hostView } from "../sys/host_memory.ts";
import { defaultSyscalls } from "../sys/libc.ts";
import type { IoctlRequest } from "../sys/syscalls.ts";
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
} from "../vfio/iommufd/constants.ts";
import { ForwardingSyscalls } from "./forwarding_syscalls.ts";

const FD = 9000;
const PAGE = 4096n;

export class FakeIommufd extends ForwardingSyscalls {
  /** Whether the IOMMU can track dirty pages (HWPT_ALLOC with DIRTY_TRACKING). */
  dirtyCapable: boolean;
  openFds = 0;
  readonly calls: string[] = [];
  /** Called before each GET_DIRTY_BITMAP answers: the device's writes happen here. */
  onReadDirty: (() => void) | undefined;
  #nextId = 1;
  #mappings = new Map<bigint, bigint>(); // iova -> length
  #tracking = new Set<number>();
  #dirtyHwpts = new Set<number>();
  #dirty = new Set<bigint>(); // IOVA page numbers

  constructor(options: { dirtyCapable?: boolean } = {}) {
    super(defaultSyscalls());
    this.dirtyCapable = options.dirtyCapable ?? true;
  }

  /** The device writes the 4 KiB page at `iova`: dirty if mapped and tracked. */
  deviceWrite(iova: bigint): void {
    const mapped = [...this.#mappings].some(([at, len]) => iova >= at && iova < at + len);
    if (mapped && this.#tracking.size > 0) this.#dirty.add(iova / PAGE);
  }

  override open(path: string, flags: number): number {
    if (path !== "/dev/iommu") return super.open(path, flags);
    this.openFds++;
    return FD;
  }

  override close(fd: number): void {
    if (fd !== FD) return super.close(fd);
    this.openFds--;
  }

  override ioctl(fd: number, req: IoctlRequest, arg: Uint8Array): number {
    if (fd !== FD) return super.ioctl(fd, req, arg);
    this.calls.push(req.name);
    const v = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
    switch (req.name) {
      case "IOMMU_IOAS_ALLOC":
        v.setUint32(8, this.#nextId++, true);
        return 0;
      case "IOMMU_IOAS_MAP":
        this.#mappings.set(v.getBigUint64(32, true), v.getBigUint64(24, true));
        return 0;
      case "IOMMU_IOAS_UNMAP": {
        const iova = v.getBigUint64(8, true);
        const len = this.#mappings.get(iova);
        if (len === undefined) throw new IoctlError(req.name, ENOENT);
        this.#mappings.delete(iova);
        for (let p = iova / PAGE; p < (iova + len) / PAGE; p++) this.#dirty.delete(p);
        v.setBigUint64(16, len, true);
        return 0;
      }
      case "IOMMU_HWPT_ALLOC": {
        const dirty = (v.getUint32(4, true) & IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
        if (dirty && !this.dirtyCapable) throw new IoctlError(req.name, EOPNOTSUPP);
        const id = this.#nextId++;
        if (dirty) this.#dirtyHwpts.add(id);
        v.setUint32(16, id, true);
        return 0;
      }
      case "IOMMU_HWPT_SET_DIRTY_TRACKING": {
        const id = v.getUint32(8, true);
        if (!this.#dirtyHwpts.has(id)) throw new IoctlError(req.name, EOPNOTSUPP);
        if (v.getUint32(4, true) & 1) {
          if (!this.#tracking.has(id)) this.#dirty.clear();
          this.#tracking.add(id);
        } else this.#tracking.delete(id);
        return 0;
      }
      case "IOMMU_HWPT_GET_DIRTY_BITMAP": {
        if (!this.#tracking.has(v.getUint32(4, true))) throw new IoctlError(req.name, EINVAL);
        this.onReadDirty?.();
        const iova = v.getBigUint64(16, true);
        const length = v.getBigUint64(24, true);
        const pageSize = v.getBigUint64(32, true);
        if (pageSize !== PAGE) throw new IoctlError(req.name, EINVAL);
        const clear = (v.getUint32(8, true) & IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) === 0;
        const pages = Number(length / PAGE);
        // SAFETY: the caller's bitmap buffer holds at least ceil(pages / 64) u64 words.
        const bits = hostView(v.getBigUint64(40, true), Math.ceil(pages / 64) * 8);
        for (let k = 0; k < pages; k++) {
          const p = iova / PAGE + BigInt(k);
          if (!this.#dirty.has(p)) continue;
          bits[k >> 3] |= 1 << (k & 7);
          if (clear) this.#dirty.delete(p);
        }
        return 0;
      }
      case "IOMMU_DESTROY":
        this.#tracking.delete(v.getUint32(4, true));
        return 0;
      default:
        throw new IoctlError(req.name, EOPNOTSUPP);
    }
  }
}

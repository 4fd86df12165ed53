/**
 * The syscall boundary: the one seam through which the project talks to the
 * kernel. {@linkcode LibcSyscalls} implements it with libc through FFI; the
 * fake kernel in `tests/` implements it for tests. Every method throws a
 * `SyscallError` (or `IoctlError`) on failure, so there is one throw site per
 * call.
 *
 * {@linkcode Syscalls} is the whole seam. Each consumer asks only for the
 * calls it makes, through a narrow view of it:
 * - {@linkcode VfioSyscalls}: the VFIO and iommufd objects (fds, ioctls,
 *   region reads and writes, mappings).
 * - {@linkcode MemorySyscalls}: guest RAM backings (`memfd_create`,
 *   `ftruncate`, `mmap`, `madvise`) and their holes (`lseek`
 *   `SEEK_DATA`/`SEEK_HOLE`).
 * - {@linkcode PagemapSyscalls}: `/proc/self/pagemap` reads and the
 *   `PAGEMAP_SCAN` ioctl.
 * - {@linkcode UffdSyscalls}: `userfaultfd(2)`, `/dev/userfaultfd` and the
 *   `UFFDIO_*` ioctls.
 * - {@linkcode ProcSyscalls}: `/proc` and `/sys` reads, listings and writes
 *   (`clear_refs`), `getuid(2)` and `prctl(2)`.
 *
 * `GuestMemory` and the dirty trackers take the whole {@linkcode Syscalls}
 * and hand each part what it needs.
 *
 * @module
 */

/** An ioctl request: the number paired with the name it has in the kernel headers. */
export interface IoctlRequest {
  /** The name, such as `"VFIO_IOMMU_MAP_DMA"`. */
  readonly name: string;
  /** The request number passed to `ioctl(2)`. */
  readonly code: bigint;
}

/**
 * Every call the project makes into the kernel.
 *
 * Addresses and sizes are `bigint`. Memory returned by {@linkcode Syscalls.mmap}
 * is real host memory in both implementations, so its address can be viewed
 * with `hostView` and placed in ioctl structs.
 */
export interface Syscalls {
  // fds
  /**
   * Opens a path.
   *
   * @param path The path.
   * @param flags `open(2)` flags.
   * @returns The new fd.
   * @throws {SyscallError} With the path and errno.
   */
  open(path: string, flags: number): number;
  /**
   * Closes an fd.
   *
   * @param fd The fd.
   * @throws {SyscallError} When the kernel refuses.
   */
  close(fd: number): void;
  /**
   * Issues an ioctl whose argument is a pointer to `arg`. The kernel may write
   * back into `arg`.
   *
   * @param fd The fd.
   * @param request The request.
   * @param arg The struct bytes.
   * @returns The non-negative return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctl(fd: number, request: IoctlRequest, arg: Uint8Array): number;
  /**
   * Issues an ioctl whose argument is an integer value (or an address of
   * memory that does not move, such as an mmap'd struct).
   *
   * @param fd The fd.
   * @param request The request.
   * @param value The integer argument.
   * @returns The non-negative return value.
   * @throws {IoctlError} Naming the request and the errno.
   */
  ioctlValue(fd: number, request: IoctlRequest, value: bigint): number;
  /**
   * Reads at an offset.
   *
   * @param fd The fd.
   * @param buf Where the bytes go.
   * @param offset The offset.
   * @returns The number of bytes read.
   * @throws {SyscallError} When the kernel refuses.
   */
  pread(fd: number, buf: Uint8Array, offset: bigint): number;
  /**
   * Writes at an offset.
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @param offset The offset.
   * @returns The number of bytes written.
   * @throws {SyscallError} When the kernel refuses.
   */
  pwrite(fd: number, buf: Uint8Array, offset: bigint): number;
  /**
   * Reads at the fd's current position (`read(2)`), as a stream: a VFIO
   * migration `data_fd` is read this way, and `0` means end of stream.
   *
   * @param fd The fd.
   * @param buf Where the bytes go; its length is the most read.
   * @returns The number of bytes read; 0 at end of stream.
   * @throws {SyscallError} When the kernel refuses (`ENOMSG` on a drained
   *   pre-copy stream, `EBADF` on an fd not open for reading).
   */
  read(fd: number, buf: Uint8Array): number;
  /**
   * Writes at the fd's current position (`write(2)`), as a stream: a VFIO
   * migration `data_fd` in `RESUMING` is written this way.
   *
   * @param fd The fd.
   * @param buf The bytes.
   * @returns The number of bytes written (may be fewer than `buf` holds).
   * @throws {SyscallError} When the kernel refuses (`EBADF` on an fd not
   *   open for writing).
   */
  write(fd: number, buf: Uint8Array): number;
  // mappings
  /**
   * Maps memory.
   *
   * @param length Bytes to map.
   * @param prot `PROT_*` flags.
   * @param flags `MAP_*` flags.
   * @param fd The fd to map, or -1 for anonymous memory.
   * @param offset The offset into the fd.
   * @returns The host address of the mapping.
   * @throws {SyscallError} When the kernel refuses.
   */
  mmap(
    length: bigint,
    prot: number,
    flags: number,
    fd: number,
    offset: bigint,
  ): bigint;
  /**
   * Unmaps memory.
   *
   * @param addr The host address.
   * @param length Bytes to unmap.
   * @throws {SyscallError} When the kernel refuses.
   */
  munmap(addr: bigint, length: bigint): void;
  // file size, position and directory entries
  /**
   * Moves a file's position (`lseek(2)`); with `SEEK_DATA` / `SEEK_HOLE`,
   * finds data and holes.
   *
   * @param fd The fd.
   * @param offset The offset.
   * @param whence `SEEK_SET`, `SEEK_CUR`, `SEEK_END`, `SEEK_DATA` or `SEEK_HOLE`.
   * @returns The resulting offset.
   * @throws {SyscallError} When the kernel refuses (`ENXIO` when `SEEK_DATA`
   *   finds no data at or past `offset`).
   */
  lseek(fd: number, offset: bigint, whence: number): bigint;
  /**
   * Sets a file's size (`ftruncate(2)`).
   *
   * @param fd The fd.
   * @param length The size in bytes.
   * @throws {SyscallError} When the kernel refuses.
   */
  ftruncate(fd: number, length: bigint): void;
  /**
   * Reads directory entries (`getdents64(2)`) as `struct linux_dirent64`
   * records.
   *
   * @param fd A directory fd (opened with `O_DIRECTORY`).
   * @param buf Where the records go.
   * @returns Bytes written into `buf`; 0 at the end of the directory.
   * @throws {SyscallError} When the kernel refuses.
   */
  getdents64(fd: number, buf: Uint8Array): number;
  // memory files and advice
  /**
   * Creates an anonymous memory file (`memfd_create(2)`), of size 0.
   *
   * @param name The name shown in /proc/self/maps (`/memfd:NAME`).
   * @param flags `MFD_*` flags.
   * @returns The fd.
   * @throws {SyscallError} When the kernel refuses.
   */
  memfdCreate(name: string, flags: number): number;
  /**
   * Advises the kernel about a range (`madvise(2)`).
   *
   * @param addr Page-aligned host address.
   * @param length Bytes.
   * @param advice `MADV_*`.
   * @throws {SyscallError} When the kernel refuses (`ENOMEM` for an unmapped
   *   range, or when `MADV_POPULATE_WRITE` cannot back the pages).
   */
  madvise(addr: bigint, length: bigint, advice: number): void;
  /**
   * Changes a range's protection (`mprotect(2)`).
   *
   * @param addr Page-aligned host address.
   * @param length Bytes.
   * @param prot `PROT_*` flags.
   * @throws {SyscallError} When the kernel refuses.
   */
  mprotect(addr: bigint, length: bigint, prot: number): void;
  // userfaultfd; its ioctls go through ioctl()
  /**
   * Creates a userfaultfd (`userfaultfd(2)`).
   *
   * @param flags `UFFD_USER_MODE_ONLY`, `O_CLOEXEC`, `O_NONBLOCK`.
   * @returns The fd.
   * @throws {SyscallError} `EPERM` when not permitted, `ENOSYS` without
   *   `CONFIG_USERFAULTFD`.
   */
  userfaultfd(flags: number): number;
  // the process
  /**
   * This process's real user id (`getuid(2)`; it cannot fail).
   *
   * @returns The uid.
   */
  getuid(): number;
  /**
   * Sets a process attribute (`prctl(2)`) that takes one argument, such as
   * `PR_SET_THP_DISABLE`.
   *
   * @param option The `PR_*` option.
   * @param arg2 Its argument.
   * @returns The non-negative return value.
   * @throws {SyscallError} When the kernel refuses.
   */
  prctl(option: number, arg2: bigint): number;
}

/** What the VFIO and iommufd objects call: fds, ioctls, region I/O, mappings. */
export type VfioSyscalls = Pick<
  Syscalls,
  | "open"
  | "close"
  | "ioctl"
  | "ioctlValue"
  | "mmap"
  | "munmap"
  | "pread"
  | "pwrite"
  | "read"
  | "write"
>;

/** What guest RAM backings call: memfds, mappings, prefaulting, holes. */
export type MemorySyscalls = Pick<
  Syscalls,
  "memfdCreate" | "ftruncate" | "close" | "mmap" | "munmap" | "madvise" | "mprotect" | "lseek"
>;

/** What `/proc/self/pagemap` readers and `PAGEMAP_SCAN` call. */
export type PagemapSyscalls = Pick<
  Syscalls,
  "open" | "close" | "pread" | "ioctlValue" | "mmap" | "munmap"
>;

/** What a userfaultfd calls: `userfaultfd(2)`, `/dev/userfaultfd`, the `UFFDIO_*` ioctls. */
export type UffdSyscalls = Pick<
  Syscalls,
  "userfaultfd" | "open" | "close" | "ioctl" | "ioctlValue"
>;

/** What `/proc` and `/sys` readers and writers call, and the process calls. */
export type ProcSyscalls = Pick<
  Syscalls,
  "open" | "close" | "read" | "write" | "getdents64" | "getuid" | "prctl"
>;

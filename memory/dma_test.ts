import assert from "node:assert/strict";
import { guestAddress as g, type HostAddress, type Iova } from "../sys/address.ts";
import type { DmaLease, DmaMapper } from "./dma.ts";
import { GuestMemory } from "./guest_memory.ts";

class FakeMapper implements DmaMapper {
  mapped = new Map<bigint, { vaddr: bigint; size: bigint; readonly?: boolean }>();
  calls: string[] = [];
  failAt = -1;
  #n = 0;
  mapDma(
    iova: Iova,
    host: { vaddr: HostAddress; size: bigint },
    options?: { readonly?: boolean },
  ): DmaLease {
    if (this.#n++ === this.failAt) throw new TypeError(`injected failure at iova ${iova}`);
    this.calls.push(`map ${iova.toString(16)}`);
    this.mapped.set(iova, { vaddr: host.vaddr, size: host.size, readonly: options?.readonly });
    let done = false;
    const unmap = () => {
      if (done) return;
      done = true;
      this.calls.push(`unmap ${iova.toString(16)}`);
      this.mapped.delete(iova);
    };
    return { iova, size: host.size, unmap, [Symbol.dispose]: unmap };
  }
}

function memory(): GuestMemory {
  return GuestMemory.create([
    { gpa: g(0n), size: 0x10_0000n },
    { gpa: g(0x10_0000n), size: 0x10_0000n },
    { gpa: g(0x100_0000n), size: 0x20_0000n },
  ]);
}

Deno.test("GuestMemory.mapInto() maps every region at IOVA = GPA and unmaps all once", () => {
  using mem = memory();
  const mapper = new FakeMapper();
  {
    using lease = mem.mapInto(mapper);
    assert.equal(lease.leases.length, 3);
    assert.deepEqual([...mapper.mapped.keys()], [0n, 0x10_0000n, 0x100_0000n]);
    for (const r of mem.regions) {
      assert.deepEqual(mapper.mapped.get(r.gpa), {
        vaddr: r.hostAddress,
        size: r.size,
        readonly: undefined,
      });
    }
    lease.unmap();
    lease.unmap();
  }
  assert.equal(mapper.mapped.size, 0);
  assert.deepEqual(mapper.calls.slice(3), ["unmap 1000000", "unmap 100000", "unmap 0"]);
});

Deno.test("GuestMemory.mapInto() adds iovaBase and passes readonly", () => {
  using mem = memory();
  const mapper = new FakeMapper();
  using _lease = mem.mapInto(mapper, { iovaBase: 0x1_0000_0000n, readonly: true });
  assert.deepEqual([...mapper.mapped.keys()], [0x1_0000_0000n, 0x1_0010_0000n, 0x1_0100_0000n]);
  assert.ok([...mapper.mapped.values()].every((m) => m.readonly === true));
});

Deno.test("GuestMemory.mapInto() unmaps what it mapped when a later region fails", () => {
  using mem = memory();
  const mapper = new FakeMapper();
  mapper.failAt = 2;
  assert.throws(() => mem.mapInto(mapper), /injected failure/);
  assert.equal(mapper.mapped.size, 0);
  assert.deepEqual(mapper.calls, ["map 0", "map 100000", "unmap 100000", "unmap 0"]);
});

Deno.test("GuestMemory.mapInto() rejects an IOVA base that overflows", () => {
  using mem = memory();
  const mapper = new FakeMapper();
  assert.throws(() => mem.mapInto(mapper, { iovaBase: 0xffff_ffff_ffff_f000n }), /overflows a u64/);
  assert.equal(mapper.mapped.size, 0);
});

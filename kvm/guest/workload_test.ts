// The VMM-side replay of the guest's write sequence, against the guest's own
// C compiled for this host.
import assert from "node:assert/strict";
import { checksumAfter, guestPage, guestValue, mix64 } from "./workload.ts";

const HARNESS = `#include <stdio.h>
#include "guest.c"
int main(void) {
  u64 seed = 0x9e3779b9u;
  u64 h = GUEST_FNV_OFFSET;
  for (u64 i = 0; i < 3000; i++) {
    u64 v = mix((seed << 32) ^ i) | 1;
    h = (h ^ v) * GUEST_FNV_PRIME;
    if (i % 97 == 0) {
      printf("v %llu %llu %llu %llu %llu\\n", i, v, pick_page(GUEST_PATTERN_SEQUENTIAL, 1000, i, v),
             pick_page(GUEST_PATTERN_RANDOM, 1000, i, v), pick_page(GUEST_PATTERN_HOTSPOT, 1000, i, v));
    }
  }
  printf("h %llu\\n", h);
  return 0;
}
`;

Deno.test("guestValue(), guestPage() and checksumAfter() replay the guest's C", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-guest-seq-" });
  try {
    await Deno.writeTextFile(`${dir}/seq.c`, HARNESS);
    const guestDir = new URL(".", import.meta.url).pathname;
    const cc = await new Deno.Command("cc", {
      args: ["-O2", "-w", "-I", guestDir, "-o", `${dir}/seq`, `${dir}/seq.c`],
      env: { C_INCLUDE_PATH: guestDir },
      stderr: "piped",
    }).output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    const out = new TextDecoder().decode((await new Deno.Command(`${dir}/seq`).output()).stdout);
    const seed = 0x9e3779b9;
    let rows = 0;
    for (const line of out.trim().split("\n")) {
      const f = line.split(" ");
      if (f[0] === "h") {
        assert.equal(checksumAfter(seed, 3000n), BigInt(f[1]));
        continue;
      }
      const i = BigInt(f[1]);
      const v = guestValue(seed, i);
      assert.equal(v, BigInt(f[2]), `value ${i}`);
      assert.deepEqual(
        [
          guestPage("sequential", 1000, i, v),
          guestPage("random", 1000, i, v),
          guestPage("hotspot", 1000, i, v),
        ],
        [Number(f[3]), Number(f[4]), Number(f[5])],
        `page of write ${i}`,
      );
      rows++;
    }
    assert.equal(rows, 31);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("guestPage() hotspot sends about 90 % of writes to the first 10 % of pages", () => {
  let hot = 0;
  for (let i = 0n; i < 5000n; i++) if (guestPage("hotspot", 1000, i, guestValue(3, i)) < 100) hot++;
  assert.ok(hot > 4300 && hot < 4700, String(hot));
  assert.equal(mix64(0n), 16294208416658607535n);
});

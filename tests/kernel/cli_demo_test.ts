// `deno task demo` with the edu device's group: the source's RAM is mapped
// into the real container, the all-mapped scope is detected and the explicit
// policy applied, and the destination verifies the image.
import assert from "node:assert/strict";
import { groupAndDevice } from "./_group.ts";

const root = new URL("../..", import.meta.url).pathname;

Deno.test("mod.ts demo --group N migrates with the real container", async () => {
  const { group } = groupAndDevice();
  const svg = await Deno.makeTempFile({ suffix: ".svg" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-ffi",
        "--allow-read",
        "--allow-write",
        "--allow-net",
        "--allow-env",
        "--allow-run",
        `${root}mod.ts`,
        "demo",
        "--group",
        String(group),
        "--ram",
        "16M",
        "--dirty-rate",
        "1M",
        "--transport",
        "unix",
        // TCG moves tens of MB/s; the limit leaves room to resend the mapped RAM.
        "--downtime-ms",
        "10000",
        "--svg",
        svg,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /VFIO group \d+ \(real container\)/);
    assert.match(text, /vfio-container=all-mapped/);
    assert.match(text, /imprecise device dirty allowed: 16\.0 MiB/);
    assert.match(text, /state will not migrate \(the device's driver has no migration support/);
    assert.match(text, /digests:\s+equal/);
    assert.match(Deno.readTextFileSync(svg), /^<svg /);
  } finally {
    Deno.removeSync(svg);
  }
});

// kernel-profiles: stock-6.1-kvm
// `deno task demo --guest kvm` (the README's demo with a KVM guest): two
// processes, the test guest's heartbeat from both interleaved, and a guest
// that goes on at the destination.
import assert from "node:assert/strict";

const root = new URL("../..", import.meta.url).pathname;

Deno.test("mod.ts demo --guest kvm migrates the running guest and shows its heartbeat on both sides", async () => {
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
        "--guest",
        "kvm",
        "--ram",
        "8M",
        "--dirty-rate",
        "1M",
        "--run-after-ms",
        "500",
        "--downtime-ms",
        "5000",
        "--svg",
        svg,
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(240_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /the KVM test guest writing random pages/);
    assert.match(text, /\[source\] {6}guest: heartbeat \d+ counter=\d+/);
    assert.match(text, /\[destination\] guest: heartbeat \d+ counter=\d+/);
    assert.match(text, /\[source\] .*device kvm-vm: state migrated/);
    assert.match(text, /digests:\s+equal/);
    const g = /guest: {7}counter (\d+) at the source's stop .*, (\d+) restored, (\d+) after/.exec(
      text,
    );
    assert.ok(g !== null, text);
    assert.ok(BigInt(g[1]) > 0n && g[1] === g[2] && BigInt(g[3]) > BigInt(g[2]), g[0]);
    assert.match(text, /it lived through the migration/);
  } finally {
    Deno.removeSync(svg);
  }
});

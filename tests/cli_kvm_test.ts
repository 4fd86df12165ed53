// The KVM guest's flags without KVM: where the device is missing, one line
// names it, what to grant, and where the KVM tests run instead; the
// KVM-only flags need --guest kvm.
import assert from "node:assert/strict";
import { startCli } from "./_support.ts";

for (
  const args of [
    ["migrate", "--to", "file:/dev/null", "--ram", "8M"],
    ["receive", "--from", "file:/dev/null", "--ram", "8M"],
  ]
) {
  Deno.test(`mod.ts ${args[0]} --guest kvm names a missing KVM device in one line`, async () => {
    await using cli = startCli([...args, "--guest", "kvm", "--kvm-device", "/nonexistent/kvm"]);
    const status = await cli.exit();
    assert.equal(status.code, 1);
    const lines = cli.stderr.filter((l) => l !== "");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0],
      /^deno-vmm: Cannot use KVM: \/nonexistent\/kvm does not exist.*load the module \(sudo modprobe kvm_amd, or kvm_intel on Intel\).*deno task test:kernel/,
    );
  });
}

Deno.test("mod.ts migrate and receive refuse the KVM flags without --guest kvm", async () => {
  for (
    const [args, flag] of [
      [["migrate", "--to", "file:/dev/null", "--ram", "8M", "--kvm-dirty", "ring"], "kvm-dirty"],
      [
        ["receive", "--from", "file:/dev/null", "--ram", "8M", "--run-after-ms", "5"],
        "run-after-ms",
      ],
      [["migrate", "--to", "file:/dev/null", "--ram", "8M", "--guest", "qemu"], ""],
    ] as const
  ) {
    await using cli = startCli([...args]);
    assert.equal((await cli.exit()).code, 2, cli.stderr.join("\n"));
    assert.match(
      cli.stderr.join("\n"),
      flag === ""
        ? /--guest takes one of worker, kvm, not "qemu"/
        : new RegExp(`--${flag} needs --guest kvm`),
    );
  }
});

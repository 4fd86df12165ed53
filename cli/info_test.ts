import assert from "node:assert/strict";
import { SyscallError } from "../sys/errors.ts";
import { FakeKernel } from "../tests/fake_kernel.ts";
import { describeError, UsageError } from "./describe_error.ts";
import { runInfo } from "./info.ts";
import {
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIGRATION,
} from "../vfio/constants.ts";
import { fail } from "../tests/fake/user_memory.ts";
import { ENOTTY } from "../sys/errno.ts";

function capture(args: string[], kernel: FakeKernel): string {
  const lines: string[] = [];
  assert.equal(runInfo(args, { syscalls: kernel, write: (l) => lines.push(l) }), 0);
  return lines.join("\n");
}

Deno.test("runInfo() --json prints the documented keys", () => {
  const kernel = new FakeKernel();
  const j = JSON.parse(capture(["--group", "26", "--json"], kernel));
  assert.deepEqual(Object.keys(j), ["apiVersion", "extensions", "iommu", "dirtySources"]);
  assert.equal(j.apiVersion, 0);
  assert.equal(j.extensions.VFIO_TYPE1v2_IOMMU, true);
  assert.deepEqual(j.iommu.iovaPgsizes, [4096, 2097152, 1073741824]);
  assert.deepEqual(j.iommu.iovaRanges[1], { start: "0xfef00000", end: "0x7fffffffff" });
  assert.equal(j.iommu.dmaAvail, 65535);
  assert.deepEqual(j.iommu.migration, {
    pgsizes: [4096],
    maxDirtyBitmapSize: 268435456,
    maxBytesPerQuery: 268435456 * 8 * 4096,
  });
  assert.equal(kernel.openFds, 0, "info closes what it opened");
});

Deno.test("runInfo() shows the bitmap geometry, and null migration without the cap", () => {
  const text = capture(["--group", "26"], new FakeKernel());
  assert.match(text, /bitmap per GiB\s+32768 bytes/);
  assert.match(text, /most memory \/ query\s+8 TiB/);
  const j = JSON.parse(
    capture(["--group", "26", "--json"], new FakeKernel({ migrationCap: null })),
  );
  assert.equal(j.iommu.migration, null);
  const noGroup = JSON.parse(capture(["--json"], new FakeKernel()));
  assert.equal(noGroup.iommu, null);
});

Deno.test("runInfo() errors read as one line naming the path, errno and remedy", () => {
  const denied = new FakeKernel({ deniedPaths: ["/dev/vfio/26"] });
  let err: unknown;
  try {
    runInfo(["--group", "26"], { syscalls: denied, write: () => {} });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SyscallError);
  const eacces = describeError(err);
  assert.match(
    eacces,
    /^open \/dev\/vfio\/26 failed: EACCES \(13\): (user \S+ \(uid \d+\)|uid \d+) lacks read-write permission on \/dev\/vfio\/26/,
  );
  assert.equal(eacces.split("\n").length, 1);
  assert.equal(denied.openFds, 0);
  assert.throws(
    () => runInfo(["--group", "99"], { syscalls: new FakeKernel(), write: () => {} }),
    (e: unknown) =>
      /^No VFIO group 99: open \/dev\/vfio\/99 failed: ENOENT \(2\)/.test(describeError(e)),
  );
  // The hint to load the modules is for the default container only.
  assert.match(
    describeError(new SyscallError("open", 2, { path: "/dev/vfio/vfio" })),
    /ENOENT \(2\): the vfio modules may not be loaded/,
  );
  assert.throws(
    () =>
      runInfo(["--container", "/dev/vfio/nope"], { syscalls: new FakeKernel(), write: () => {} }),
    (e: unknown) =>
      /^open \/dev\/vfio\/nope failed: ENOENT \(2\): no such file$/.test(describeError(e)),
  );
  assert.throws(() => runInfo(["--bogus"]), UsageError);
  assert.throws(() => runInfo(["--group", "abc"]), /--group takes a group number/);
});

Deno.test("mod.ts info without VFIO prints one line and exits non-zero", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-read",
      new URL("../mod.ts", import.meta.url).pathname,
      "info",
      "--container",
      "/nonexistent/vfio",
    ],
    stderr: "piped",
    stdout: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1);
  assert.equal(err.split("\n").length, 1, err);
  // A path the user named gets no hint about modules: it simply is not there.
  assert.equal(err, "deno-vmm: open /nonexistent/vfio failed: ENOENT (2): no such file");
});

const PINTEST = "83b8f4f2-509f-382f-3c1e-e6bfe0fa1001";

function sources(args: string[], kernel: FakeKernel) {
  return JSON.parse(capture([...args, "--json"], kernel)).dirtySources as {
    source: string;
    for: string;
    available: boolean;
    scope?: string;
    reason: string;
  }[];
}

Deno.test("runInfo() lists an edu group's container as all-mapped, its driver without migration, no iommufd", () => {
  const kernel = new FakeKernel();
  const s = sources(["--group", "26", "--device", "0000:00:03.0"], kernel);
  assert.deepEqual(s.map((x) => [x.source, x.for, x.available, x.scope]), [
    ["vfio-container", "group 26", true, "all-mapped"],
    ["device-dma-logging", "0000:00:03.0", false, undefined],
    ["iommufd-hwpt", "0000:00:03.0", false, undefined],
  ]);
  assert.match(s[0].reason, /^all-mapped scope \(a group has not pinned pages/);
  assert.match(s[1].reason, /^no migration capability/);
  assert.match(s[2].reason, /^no iommufd: no \/dev\/iommu/);
  assert.equal(
    kernel.openFds + kernel.liveMappings + kernel.dmaMappings,
    0,
    "the probe released all",
  );
  const text = capture(["--group", "26", "--device", "0000:00:03.0"], new FakeKernel());
  assert.match(
    text,
    /Device dirty sources:\n {2}vfio-container +group 26 +available, all-mapped: /,
  );
});

Deno.test("runInfo() lists a pinned-only container as precise, and one without the cap as unavailable", () => {
  const pinned = new FakeKernel({
    groups: [{ id: 27, devices: [{ name: PINTEST, model: "pintest" }] }],
  });
  const [c] = sources(["--group", "27"], pinned);
  assert.deepEqual([c.available, c.scope], [true, "precise"]);
  assert.match(c.reason, /^pinned scope/);
  assert.equal(pinned.openFds + pinned.liveMappings + pinned.dmaMappings, 0);
  const [none] = sources(["--group", "26"], new FakeKernel({ migrationCap: null }));
  assert.equal(none.available, false);
  assert.match(none.reason, /^no migration capability/);
  const [noGroup] = sources([], new FakeKernel());
  assert.match(noGroup.reason, /attach a group/);
  assert.throws(() => runInfo(["--device", "x"], { syscalls: new FakeKernel() }), UsageError);
});

Deno.test("runInfo() lists device DMA logging when the driver migrates and logs", () => {
  const kernel = new FakeKernel({
    groups: [{
      id: 26,
      devices: [{
        name: "0000:00:03.0",
        features: {
          feature(_device, flags, payload) {
            const f = flags & VFIO_DEVICE_FEATURE_MASK;
            if (f === VFIO_DEVICE_FEATURE_MIGRATION) {
              payload.write(8, new Uint8Array([7, 0, 0, 0, 0, 0, 0, 0]));
              return 0;
            }
            if (f === VFIO_DEVICE_FEATURE_DMA_LOGGING_START) return 0;
            return fail(ENOTTY);
          },
        },
      }],
    }],
  });
  const s = sources(["--group", "26", "--device", "0000:00:03.0"], kernel);
  assert.deepEqual([s[1].source, s[1].available, s[1].scope], [
    "device-dma-logging",
    true,
    "precise",
  ]);
});

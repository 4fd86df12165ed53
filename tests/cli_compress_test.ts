// `migrate --compress`: the flag's validation, and a compressed migration to a
// file that `receive` verifies without being told, in fewer bytes.
import assert from "node:assert/strict";
import { startCli } from "./_support.ts";
import { parseReport } from "../migration/engine/report.ts";

async function migrateToFile(dir: string, name: string, extra: string[]) {
  const path = `${dir}/${name}.mig`;
  await using src = startCli([
    "migrate",
    "--to",
    `file:${path}`,
    "--ram",
    "16M",
    "--fill",
    "text",
    "--report",
    `${dir}/${name}.json`,
    ...extra,
  ]);
  assert.equal((await src.exit()).code, 0, src.stderr.join("\n"));
  await using dst = startCli(["receive", "--from", `file:${path}`, "--ram", "16M"]);
  assert.equal((await dst.exit()).code, 0, dst.stderr.join("\n"));
  const report = parseReport(JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`)), name);
  return { bytes: (await Deno.stat(path)).size, report, stderr: src.stderr.join("\n") };
}

Deno.test("migrate --compress zstd sends text-like RAM in fewer bytes, and receive verifies it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-compress-" });
  try {
    const plain = await migrateToFile(dir, "plain", []);
    const packed = await migrateToFile(dir, "packed", ["--compress", "zstd"]);
    assert.equal(plain.report.compression, undefined);
    const c = packed.report.compression!;
    assert.equal(c.codec, "zstd");
    assert.ok(c.compressedRuns > 0 && c.wireBytes < c.rawBytes, JSON.stringify(c));
    assert.equal(packed.report.totalBytes, packed.bytes);
    // Half the 16 MiB is text: compression must save at least half of it.
    assert.ok(packed.bytes < plain.bytes - 4 * 2 ** 20, `${packed.bytes} against ${plain.bytes}`);
    assert.match(
      packed.stderr,
      /compression zstd: [\d.]+ MiB of runs raw, [\d.]+ MiB on the wire \(0\.\d+\); \d+ of \d+ runs compressed/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate --compress auto migrates to a file and reports its choices", async () => {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-compress-" });
  try {
    const auto = await migrateToFile(dir, "auto", ["--compress", "auto"]);
    const c = auto.report.compression!;
    assert.equal(c.policy, "auto");
    // Whether runs went compressed depends on how fast the file takes them;
    // every run was either tried or sent raw for the wire.
    assert.ok(c.runs + c.wireRawRuns > 0 && c.sampledRuns <= c.runs, JSON.stringify(c));
    assert.equal(auto.report.totalBytes, auto.bytes);
    assert.match(
      auto.stderr,
      /compression auto zstd: .*runs compressed; auto: \d+ runs raw as the wire was faster, \d+ sampled/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("migrate --compress refuses an unknown codec in one line", async () => {
  await using src = startCli([
    "migrate",
    "--to",
    "file:/tmp/x",
    "--ram",
    "16M",
    "--compress",
    "lz4",
  ]);
  assert.equal((await src.exit()).code, 2);
  const lines = src.stderr.filter((l) => l.trim() !== "");
  assert.deepEqual(lines, ['deno-vmm: --compress takes one of zstd, auto, none, not "lz4"']);
});

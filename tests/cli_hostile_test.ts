// The command line as a hostile peer and a careless user meet it: a soak of
// hostile inputs against `receive` (bounded RSS, one line each time), signals
// that must not leave a socket file or an orphan behind, report paths that
// must fail before any work, oversized RAM, and messages that name things.
import assert from "node:assert/strict";
import { summarize } from "../cli/migrate.ts";
import { encodeStreamHeader, SectionType } from "../migration/stream/format.ts";
import { type MigrationReport, newReport } from "../migration/engine/report.ts";
import { connectEndpoint } from "../migration/transport/open.ts";
import type { StreamChannel } from "../migration/transport/channel.ts";
import { fakeDestination } from "./_fake_destination.ts";
import { concat, section } from "./_stream_samples.ts";
import { type Cli, controlCharacters, startCli, until } from "./_support.ts";
import { guestAddress as g } from "../sys/address.ts";

const MiB = 2 ** 20;
const RAM = 64 * MiB;
const HEADER = encodeStreamHeader([{ gpa: g(0n), size: BigInt(RAM) }], 4096);
// What the receive process may hold beyond its guest RAM: the runtime and its buffers.
const RSS_OVERHEAD_BOUND = 160 * MiB;

async function inTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "deno-vmm-cli-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The one `deno-vmm:` line a failed command printed last. */
function lastLine(cli: Cli): string {
  const line = cli.stderr.filter((l) => l.trim() !== "").at(-1) ?? "";
  assert.match(line, /^deno-vmm: /, cli.stderr.join("\n"));
  assert.deepEqual(controlCharacters(line), [], "no control characters reach the terminal");
  return line;
}

interface Hostile {
  name: string;
  /** Talks to the destination; the connection is closed after. */
  act: (ch: StreamChannel) => Promise<void>;
  /** The destination's last line. */
  expect: RegExp;
  /** Whether the destination had begun an image. */
  touched: boolean;
}

/** Keeps the connection open, silent, until the destination drops it (at most 20 s). */
async function heldUntilDropped(ch: StreamChannel): Promise<void> {
  ch.timeoutMs = 20_000;
  const buf = new Uint8Array(8192);
  try {
    while ((await ch.read(buf)) !== null) { /* a failure answer, then the close */ }
  } catch (e) {
    if (e instanceof Deno.errors.TimedOut) throw e; // the destination never dropped us
  }
}

/** Writes `bytes` until the peer stops taking them (a refusal closes the connection). */
async function flood(ch: StreamChannel, bytes: Uint8Array, total: number): Promise<void> {
  try {
    for (let sent = 0; sent < total; sent += bytes.length) await ch.write(bytes);
  } catch {
    // Refused and closed: the point of the test.
  }
}

const EMPTY_STATE = section(SectionType.DEVICE_STATE, 1n, 1n, new Uint8Array([0x64]));

const HOSTILE: Hostile[] = [
  {
    name: "a silent connection",
    act: (ch) => heldUntilDropped(ch),
    expect: /Gave up after 1 peer failed .*No valid stream header within 1 s/,
    touched: false,
  },
  {
    name: "garbage",
    act: (ch) => ch.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n".repeat(4))),
    expect: /Gave up after 1 peer failed .*Bad magic/,
    touched: false,
  },
  {
    name: "a header for another layout",
    act: (ch) => ch.write(encodeStreamHeader([{ gpa: g(0n), size: 1n << 30n }], 4096)),
    expect: /Gave up after 1 peer failed .*Layout mismatch/,
    touched: false,
  },
  {
    name: "a valid header, then silence",
    act: async (ch) => {
      await ch.write(HEADER);
      await heldUntilDropped(ch);
    },
    expect:
      /Cannot restore the image: .*No progress on .* for 1 s: the peer stopped sending; the partial image was discarded$/,
    touched: true,
  },
  {
    name: "a header and part of a section",
    act: async (ch) => {
      await ch.write(concat(HEADER, new Uint8Array(10)));
      await heldUntilDropped(ch);
    },
    expect: /No progress on .* for 1 s: the peer stopped sending; the partial image was discarded$/,
    touched: true,
  },
  {
    name: "a 700 MiB flood of empty device states",
    act: (ch) =>
      flood(ch, concat(HEADER, ...Array.from({ length: 30_000 }, () => EMPTY_STATE)), 700 * MiB),
    expect:
      /Device state for device "d", which this destination does not have \(it restores no devices\)/,
    touched: true,
  },
  {
    name: "an oversized RAM run",
    act: (ch) => ch.write(concat(HEADER, section(SectionType.RAM, 0n, 1n << 40n))),
    expect: /RAM run length 1099511627776 is not in 1 to 67108864/,
    touched: true,
  },
  {
    name: "a RAM run outside the layout",
    act: (ch) =>
      ch.write(
        concat(HEADER, section(SectionType.RAM, 1n << 40n, 4096n, new Uint8Array(4096))),
      ),
    expect: /RAM run GPA 0x10000000000 is outside the destination's layout/,
    touched: true,
  },
  {
    name: "a section with a bad checksum",
    act: (ch) => {
      const s = section(SectionType.RAM, 0n, 4096n, new Uint8Array(4096));
      s[100] ^= 1;
      return ch.write(concat(HEADER, s));
    },
    expect: /RAM run section checksum mismatch/,
    touched: true,
  },
  {
    name: "a stream cut in a RAM run",
    act: (ch) =>
      ch.write(
        concat(
          HEADER,
          section(SectionType.RAM, 0n, 8192n, new Uint8Array(8192)).slice(0, 5000),
        ),
      ),
    expect: /Stream truncated in a RAM run/,
    touched: true,
  },
  {
    name: "END before COMPLETE",
    act: (ch) => ch.write(concat(HEADER, section(SectionType.END, 0n, 4n, new Uint8Array(4)))),
    expect: /END section before COMPLETE/,
    touched: true,
  },
];

Deno.test("receive: a soak of hostile inputs keeps RSS bounded and ends each in one line", async () => {
  const rows: string[] = [];
  for (const h of HOSTILE) {
    await inTempDir(async (dir) => {
      await using dst = startCli([
        "receive",
        "--from",
        "tcp:127.0.0.1:0",
        "--ram",
        "64M",
        "--report",
        `${dir}/r.json`,
        "--max-attempts",
        "1",
        "--header-timeout",
        "1",
        "--idle-timeout",
        "1",
      ]);
      const endpoint = (await dst.line(/^listening on (tcp:\S+)/))[1];
      {
        using ch = await connectEndpoint(endpoint);
        await h.act(ch);
      }
      const status = await dst.exit(30_000);
      assert.equal(status.code, 1, `${h.name}: exit status\n${dst.stderr.join("\n")}`);
      const line = lastLine(dst);
      assert.match(line, h.expect, h.name);
      const report = JSON.parse(await Deno.readTextFile(`${dir}/r.json`));
      assert.equal(report.result, "failed", h.name);
      assert.equal(report.imageTouched, h.touched, `${h.name}: image touched`);
      assert.ok(
        report.peakRssBytes < RAM + RSS_OVERHEAD_BOUND,
        `${h.name}: peak RSS ${report.peakRssBytes / MiB} MiB over ${
          (RAM + RSS_OVERHEAD_BOUND) / MiB
        } MiB`,
      );
      rows.push(`${h.name}: RSS ${(report.peakRssBytes / MiB).toFixed(0)} MiB; ${line}`);
    });
  }
  console.log(rows.join("\n"));
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
  Deno.test(`receive removes its unix socket when stopped by ${signal}, and the next run listens`, async () => {
    await inTempDir(async (dir) => {
      const path = `${dir}/mig.sock`;
      {
        await using dst = startCli(["receive", "--from", `unix:${path}`, "--ram", "16M"]);
        await dst.line(/^listening on unix:/);
        assert.equal((await Deno.lstat(path)).isSocket, true);
        dst.child.kill(signal);
        const status = await dst.exit(20_000);
        assert.equal(status.code, code, dst.stderr.join("\n"));
        assert.match(dst.stderr.join("\n"), new RegExp(`deno-vmm: stopped by ${signal}`));
      }
      await assert.rejects(Deno.lstat(path), Deno.errors.NotFound, "the socket file is gone");
      await using again = startCli(["receive", "--from", `unix:${path}`, "--ram", "16M"]);
      await again.line(/^listening on unix:/);
    });
  });
}

/** This process's children, grandchildren and so on, by /proc. */
function descendants(pid: number): number[] {
  const parents = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      parents.set(Number(e.name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // Gone meanwhile.
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`demo stopped by ${signal} leaves no process behind`, async () => {
    await inTempDir(async (tmp) => {
      let children: number[] = [];
      {
        await using demo = startCli(
          ["demo", "--ram", "64M", "--dirty-rate", "1M", "--svg", `${tmp}/demo.svg`],
          { env: { TMPDIR: tmp } },
        );
        // Stopped as soon as the destination listens: it waits for a source
        // that will never come, holding its RAM and its port.
        await demo.line(/^\[destination\] listening on /, 60_000);
        children = descendants(demo.child.pid);
        assert.ok(children.length >= 1, `demo has its destination: ${children}`);
        demo.child.kill(signal);
        await demo.exit(30_000);
      }
      assert.ok(
        await until(() => children.every((p) => !alive(p)), 30_000),
        `children still running after the demo stopped: ${children.filter(alive)}`,
      );
      if (signal === "SIGTERM") {
        const left = [...Deno.readDirSync(tmp)].map((e) => e.name).filter((n) => n !== "demo.svg");
        assert.deepEqual(left, [], "the demo's temp directory is gone");
      }
    });
  });
}

Deno.test("migrate and receive check --report before any work", async () => {
  await inTempDir(async (dir) => {
    for (
      const [report, reason] of [
        [
          "/nonexistent/dir/r.json",
          /Cannot write --report \/nonexistent\/dir\/r\.json: No such file/,
        ],
        [dir, new RegExp(`--report ${dir} is a directory; name a file`)],
      ]
    ) {
      await using src = startCli([
        "migrate",
        "--to",
        `file:${dir}/s.mig`,
        "--ram",
        "16M",
        "--report",
        report as string,
      ]);
      assert.equal((await src.exit()).code, 2);
      assert.match(lastLine(src), reason as RegExp);
      await assert.rejects(Deno.stat(`${dir}/s.mig`), Deno.errors.NotFound, "nothing was sent");
      await using dst = startCli([
        "receive",
        "--from",
        `file:${dir}/none.mig`,
        "--ram",
        "16M",
        "--report",
        report as string,
      ]);
      assert.equal((await dst.exit()).code, 2);
      assert.match(lastLine(dst), reason as RegExp);
    }
  });
});

Deno.test("receive --ram beyond the machine fails in one line before mapping", async () => {
  for (const size of ["1T", "200T"]) {
    await using dst = startCli(["receive", "--from", "tcp:127.0.0.1:0", "--ram", size]);
    assert.equal((await dst.exit()).code, 1);
    assert.match(
      lastLine(dst),
      /^deno-vmm: Cannot back the guest RAM to prefault \((1|200) TiB\): this machine can populate [\d.]+ [GMT]iB now \(/,
    );
  }
});

Deno.test("receive --from a missing file says no stream was received, not that an image was discarded", async () => {
  await using dst = startCli(["receive", "--from", "file:/nonexistent/x.mig", "--ram", "16M"]);
  assert.equal((await dst.exit()).code, 1);
  const line = lastLine(dst);
  assert.match(
    line,
    /^deno-vmm: No migration stream was received: Cannot open file:\/nonexistent\/x\.mig: No such file/,
  );
  assert.doesNotMatch(line, /partial image/);
});

Deno.test("migrate --max-bandwidth refuses a cap no migration could finish under", async () => {
  await using src = startCli([
    "migrate",
    "--to",
    "file:/tmp/x",
    "--ram",
    "16M",
    "--max-bandwidth",
    "1",
  ]);
  assert.equal((await src.exit()).code, 2);
  assert.match(lastLine(src), /--max-bandwidth 1 is 1 bytes\/s; the cap must be at least 64K/);
});

Deno.test("migrate prints a destination's forged text escaped, on one line", async () => {
  await using dst = fakeDestination(16 * MiB, {
    rejectWith: "x\n\x1b[32mmigration completed: fake\x1b[0m",
  });
  await using src = startCli(["migrate", "--to", dst.endpoint, "--ram", "16M"]);
  assert.equal((await src.exit()).code, 1);
  const all = src.stderr.join("\n");
  assert.deepEqual(
    controlCharacters(all),
    [],
    "no escape sequence from the peer reaches the terminal",
  );
  assert.doesNotMatch(all, /^migration completed: fake/m, "no forged line");
  assert.match(all, /Destination rejected the image: x\\n\\x1b\[32mmigration completed: fake/);
});

Deno.test("summarize() says a failed migration was not verified", () => {
  const r: MigrationReport = newReport({
    transport: "tcp:h:1",
    ramBytes: MiB,
    imprecise: "refuse",
    applied: "precise sources only",
    limits: { downtimeLimitMs: 300, maxIterations: 30, maxTotalMs: 120_000, autoConverge: false },
  });
  r.result = "failed";
  r.error = "Destination rejected the image: no room";
  const text = summarize(r);
  assert.match(text, /; not verified, total/);
  assert.doesNotMatch(text, /; verified/);
});

Deno.test("report charts a report of 70,000 iterations", async () => {
  await inTempDir(async (dir) => {
    const r = newReport({
      transport: "tcp:h:1",
      ramBytes: MiB,
      imprecise: "refuse",
      applied: "precise sources only",
      limits: {
        downtimeLimitMs: 300,
        maxIterations: 70_000,
        maxTotalMs: 120_000,
        autoConverge: false,
      },
    });
    for (let i = 0; i < 70_000; i++) {
      r.iterations.push({
        iteration: i,
        dirtyPagesBySource: { cpu: i % 97 },
        dirtyPages: i % 97,
        sentPages: i % 89,
        zeroPages: 0,
        bytes: (i % 89) * 4096,
        durationMs: 1,
        bandwidthMBps: 10,
        expectedDowntimeMs: i % 400,
        throttle: 0,
      });
    }
    await Deno.writeTextFile(`${dir}/r.json`, JSON.stringify(r));
    await using cmd = startCli(["report", `${dir}/r.json`, "--svg", `${dir}/r.svg`]);
    const status = await cmd.exit();
    assert.equal(status.code, 0, cmd.stderr.join("\n"));
    assert.match(await Deno.readTextFile(`${dir}/r.svg`), /^<svg /);
  });
});

Deno.test("every subcommand answers --help with each flag and its default", async () => {
  for (const command of ["info", "migrate", "receive", "report", "demo"]) {
    await using cmd = startCli([command, "--help"]);
    const status = await cmd.exit();
    assert.equal(status.code, 0, `${command} --help: ${cmd.stderr.join("\n")}`);
    const out = await cmd.stdout;
    assert.match(out, new RegExp(`^usage: deno run -A mod\\.ts ${command}`), command);
    assert.match(out, /-h, --help +show this help/, command);
  }
  await using m = startCli(["migrate", "--help"]);
  await m.exit();
  const out = await m.stdout;
  for (const flag of ["--to ENDPOINT", "--peer-timeout SECONDS", "--max-seconds N"]) {
    assert.ok(out.includes(flag), `migrate --help lists ${flag}`);
  }
  assert.match(out, /--max-seconds N +.*\(default 120\)/);
});

// A capped link between two network namespaces for bench/migrate_vs_qemu.ts:
// a veth pair, one end in each namespace, both ends shaped with a tbf qdisc to
// the same rate, so a source in one namespace and a destination in the other
// talk as two hosts on a 1 or 10 Gbit/s link would. Names carry the process
// id, so runs never collide; teardown deletes both namespaces (which deletes
// the veth pair and its qdiscs) and runs on every exit path.

/** One link's names and addresses. */
export interface LinkPlan {
  /** The source's and destination's namespaces. */
  srcNs: string;
  dstNs: string;
  /** The veth ends (at most 15 characters: a pid has at most 7 digits). */
  srcDev: string;
  dstDev: string;
  srcAddr: string;
  dstAddr: string;
  /** tbf rate in bits/s. */
  rateBits: number;
}

/**
 * Parses a rate such as `1gbit`, `10gbit` or `500mbit` into bits/s.
 *
 * @param text The rate.
 * @returns Bits per second.
 * @throws {Error} On anything else.
 */
export function parseLinkRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(k|m|g)bit$/i.exec(text.trim());
  if (!m) throw new Error(`a link rate is like 1gbit, 10gbit or 500mbit, not "${text}"`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[m[2].toLowerCase() as "k" | "m" | "g"];
}

/**
 * Formats bits/s as tc reads it, e.g. `1gbit`.
 *
 * @param bits Bits per second.
 * @returns The rate text.
 */
export function formatLinkRate(bits: number): string {
  if (bits % 1e9 === 0) return `${bits / 1e9}gbit`;
  if (bits % 1e6 === 0) return `${bits / 1e6}mbit`;
  return `${Math.round(bits / 1e3)}kbit`;
}

/**
 * The names and addresses of link `index` of this process.
 *
 * @param pid The process id (names are unique per run).
 * @param index The link's number in this run (0 to 63).
 * @param rateBits Its rate.
 * @returns The plan.
 */
export function planLink(pid: number, index: number, rateBits: number): LinkPlan {
  const tag = `${pid}-${index}`;
  // 10.B.C.1 and .2: a /30 per link, inside its own namespaces (so runs never clash).
  const b = 200 + (index % 50), c = pid % 250;
  return {
    srcNs: `dvmlink-${tag}-s`,
    dstNs: `dvmlink-${tag}-d`,
    srcDev: `dvs${tag}`,
    dstDev: `dvd${tag}`,
    srcAddr: `10.${b}.${c}.1`,
    dstAddr: `10.${b}.${c}.2`,
    rateBits,
  };
}

/**
 * tbf's burst for a rate: 4 ms of the link (the kernel's tick at HZ=250) and
 * at least 256 KiB, above a 64 KiB GSO segment.
 *
 * @param rateBits The rate.
 * @returns Bytes.
 */
export function tbfBurst(rateBits: number): number {
  return Math.max(256 * 1024, Math.ceil(rateBits / 8 * 0.004));
}

/**
 * The commands that build the link, in order (each an argv).
 *
 * @param p The plan.
 * @returns The argvs.
 */
export function setupCommands(p: LinkPlan): string[][] {
  const ns = (name: string, ...args: string[]) => ["ip", "-n", name, ...args];
  const tbf = (name: string, dev: string) => [
    ...["tc", "-n", name, "qdisc", "add", "dev", dev, "root", "tbf"],
    ...["rate", formatLinkRate(p.rateBits), "burst", String(tbfBurst(p.rateBits))],
    ...["latency", "20ms"],
  ];
  return [
    ["ip", "netns", "add", p.srcNs],
    ["ip", "netns", "add", p.dstNs],
    ["ip", "link", "add", p.srcDev, "netns", p.srcNs, "type", "veth", "peer", "name", p.dstDev]
      .concat(["netns", p.dstNs]),
    ns(p.srcNs, "addr", "add", `${p.srcAddr}/30`, "dev", p.srcDev),
    ns(p.dstNs, "addr", "add", `${p.dstAddr}/30`, "dev", p.dstDev),
    ns(p.srcNs, "link", "set", "lo", "up"),
    ns(p.dstNs, "link", "set", "lo", "up"),
    ns(p.srcNs, "link", "set", p.srcDev, "up"),
    ns(p.dstNs, "link", "set", p.dstDev, "up"),
    tbf(p.srcNs, p.srcDev),
    tbf(p.dstNs, p.dstDev),
  ];
}

/**
 * The commands that remove the link (deleting a namespace deletes its veth end,
 * the pair and the qdiscs).
 *
 * @param p The plan.
 * @returns The argvs.
 */
export function teardownCommands(p: LinkPlan): string[][] {
  return [["ip", "netns", "delete", p.srcNs], ["ip", "netns", "delete", p.dstNs]];
}

/**
 * The argv that runs a program in a namespace (`ip netns exec` execs it, so
 * the child's pid is the program's).
 *
 * @param ns The namespace.
 * @param argv The program and its arguments.
 * @returns The wrapped argv.
 */
export function inNamespace(ns: string, argv: string[]): string[] {
  return ["ip", "netns", "exec", ns, ...argv];
}

function runSync(argv: string[]): { ok: boolean; err: string } {
  try {
    const r = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    return { ok: r.success, err: new TextDecoder().decode(r.stderr).trim() };
  } catch (e) {
    return { ok: false, err: (e as Error).message };
  }
}

/**
 * Why capped links cannot be built here, or `undefined` when they can: needs
 * root, `ip` and `tc`.
 *
 * @returns A one-line reason naming what is missing.
 */
export function linkUnavailable(): string | undefined {
  if (Deno.uid() !== 0) return "network namespaces and tc need root (run the bench as root)";
  for (const [cmd, pkg] of [["ip", "iproute2"], ["tc", "iproute2"]]) {
    if (!runSync([cmd, "-V"]).ok) return `\`${cmd}\` is missing (install ${pkg})`;
  }
  return undefined;
}

const active = new Set<LinkPlan>();

/**
 * Builds a link; on a failed step removes what was built and throws.
 *
 * @param p The plan.
 * @throws {Error} Naming the failed command and its message.
 */
export function setUpLink(p: LinkPlan): void {
  active.add(p);
  for (const argv of setupCommands(p)) {
    const r = runSync(argv);
    if (!r.ok) {
      tearDownLink(p);
      throw new Error(`\`${argv.join(" ")}\` failed: ${r.err}`);
    }
  }
}

/**
 * Removes a link (synchronous, so signal and unload handlers can call it;
 * idempotent).
 *
 * @param p The plan.
 */
export function tearDownLink(p: LinkPlan): void {
  for (const argv of teardownCommands(p)) runSync(argv);
  active.delete(p);
}

/** Removes every link this process built and has not removed. */
export function tearDownAllLinks(): void {
  for (const p of [...active]) tearDownLink(p);
}

// The pure parts of bench/_capped_link.ts: rates, names and the ip/tc commands.
import assert from "node:assert/strict";
import {
  formatLinkRate,
  inNamespace,
  parseLinkRate,
  planLink,
  setupCommands,
  tbfBurst,
  teardownCommands,
} from "../bench/_capped_link.ts";

Deno.test("parseLinkRate() reads tc rates and refuses anything else", () => {
  assert.equal(parseLinkRate("1gbit"), 1e9);
  assert.equal(parseLinkRate("10Gbit"), 1e10);
  assert.equal(parseLinkRate("500mbit"), 5e8);
  assert.equal(parseLinkRate("2.5gbit"), 2.5e9);
  for (const bad of ["1g", "fast", "gbit", "-1gbit"]) {
    assert.throws(() => parseLinkRate(bad), /a link rate is like 1gbit/);
  }
  assert.equal(formatLinkRate(1e9), "1gbit");
  assert.equal(formatLinkRate(5e8), "500mbit");
});

Deno.test("planLink() names are unique per process and link, and fit an interface name", () => {
  const a = planLink(4_194_303, 0, 1e9), b = planLink(4_194_303, 1, 1e10);
  const c = planLink(12, 0, 1e9);
  for (const p of [a, b, c]) {
    assert.ok(p.srcDev.length <= 15 && p.dstDev.length <= 15, JSON.stringify(p));
    assert.notEqual(p.srcNs, p.dstNs);
    assert.notEqual(p.srcAddr, p.dstAddr);
  }
  assert.notEqual(a.srcNs, b.srcNs);
  assert.notEqual(a.srcDev, b.srcDev);
  assert.notEqual(a.srcNs, c.srcNs);
  assert.notEqual(`${a.srcAddr}`, `${b.srcAddr}`);
});

Deno.test("setupCommands() builds both namespaces, the veth pair and a tbf on each end", () => {
  const p = planLink(42, 0, 1e9);
  const cmds = setupCommands(p).map((a) => a.join(" "));
  assert.deepEqual(cmds.slice(0, 3), [
    `ip netns add ${p.srcNs}`,
    `ip netns add ${p.dstNs}`,
    `ip link add ${p.srcDev} netns ${p.srcNs} type veth peer name ${p.dstDev} netns ${p.dstNs}`,
  ]);
  assert.ok(cmds.includes(`ip -n ${p.srcNs} addr add ${p.srcAddr}/30 dev ${p.srcDev}`));
  assert.ok(cmds.includes(`ip -n ${p.dstNs} link set ${p.dstDev} up`));
  const burst = tbfBurst(1e9);
  for (const [ns, dev] of [[p.srcNs, p.srcDev], [p.dstNs, p.dstDev]]) {
    assert.ok(
      cmds.includes(
        `tc -n ${ns} qdisc add dev ${dev} root tbf rate 1gbit burst ${burst} latency 20ms`,
      ),
      cmds.join("\n"),
    );
  }
  // A burst holds at least a 64 KiB GSO segment, and grows with the rate.
  assert.ok(tbfBurst(1e8) >= 64 * 1024);
  assert.ok(tbfBurst(1e10) > tbfBurst(1e9));
  assert.deepEqual(teardownCommands(p), [
    ["ip", "netns", "delete", p.srcNs],
    ["ip", "netns", "delete", p.dstNs],
  ]);
  assert.deepEqual(inNamespace("n", ["qemu", "-S"]), ["ip", "netns", "exec", "n", "qemu", "-S"]);
});

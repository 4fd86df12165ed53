// Two GuestMemory objects in this process migrating to each other over
// parallel channels, for the channel tests: a listener (tcp: or tls:), an
// optional proxy in front of it, and each side's outcome.
import { fillSeeded } from "./_random.ts";
import type { ChannelProxy } from "./_channel_proxy.ts";
import { GuestMemory } from "../memory/guest_memory.ts";
import type { DirtyBitmap } from "../memory/dirty_bitmap.ts";
import { guestAddress } from "../sys/address.ts";
import { migrateGuest, type MigrateGuestOptions } from "../migration/guest/source.ts";
import {
  type DestinationFailure,
  receiveGuest,
  type ReceiveGuestOptions,
} from "../migration/guest/destination.ts";
import type { MigrationFailure } from "../migration/engine/types.ts";
import type { DirtySource, SourceHarvest } from "../migration/engine/dirty_source.ts";
import { formatEndpoint } from "../migration/transport/endpoint.ts";
import type { TlsListenOptions } from "../migration/transport/tls.ts";
import { openListener } from "../migration/transport/open.ts";

// One migration between two GuestMemory objects in this process, over a
// listener of the caller's (and, optionally, a proxy in front of it).
export interface Pair {
  ram: number;
  channels: number;
  seed: number;
  /** Makes the proxy the source dials instead of the listener. */
  proxy?: (target: string) => ChannelProxy;
  source?: Partial<MigrateGuestOptions>;
  destination?: Partial<ReceiveGuestOptions>;
  /** A `tls:` listener instead of a `tcp:` one. */
  tls?: { listen: TlsListenOptions; connect: MigrateGuestOptions["tls"] };
  /** Called with the source RAM (GPA 0 at index 0) before the migration. */
  prepare?: (source: GuestMemory) => void;
}

export interface PairResult {
  source: { ok: true; digest: string } | { ok: false; error: MigrationFailure };
  destination: { ok: true; digest: string } | { ok: false; error: DestinationFailure };
  destinationMemory: GuestMemory;
}

export async function migratePair(p: Pair): Promise<PairResult> {
  await using stack = new AsyncDisposableStack();
  const layout = [{ gpa: guestAddress(0n), size: BigInt(p.ram) }];
  const source = stack.use(GuestMemory.create(layout, { backing: "memfd" }));
  fillSeeded(source.view(guestAddress(0n), p.ram), p.seed);
  p.prepare?.(source);
  const destinationMemory = GuestMemory.create(layout, { prefault: true });
  const listener = p.tls
    ? await openListener("tls:127.0.0.1:0", { tls: p.tls.listen })
    : await openListener("tcp:127.0.0.1:0");
  stack.defer(() => listener.close());
  let to = formatEndpoint(listener.endpoint);
  if (p.proxy) {
    const proxy = p.proxy(to);
    stack.use(proxy);
    to = proxy.endpoint;
  }
  const abort = new AbortController();
  let accepted = false;
  const received = receiveGuest({
    memory: destinationMemory,
    from: listener,
    zeroed: true,
    channels: p.channels,
    signal: abort.signal,
    ...p.destination,
    onAccepted: (peer, identity) => {
      accepted = true;
      p.destination?.onAccepted?.(peer, identity);
    },
  }).then(
    (g) => ({ ok: true as const, digest: g.digest }),
    (e) => ({ ok: false as const, error: e as DestinationFailure }),
  );
  const sent = await migrateGuest({
    memory: source,
    to,
    tls: p.tls?.connect,
    channels: p.channels,
    ...p.source,
  }).then(
    (r) => ({ ok: true as const, digest: r.sourceDigest! }),
    (e) => ({ ok: false as const, error: e as MigrationFailure }),
  );
  // A source that failed before the destination took it as its source leaves
  // it waiting; one that failed later has closed its connections, which the
  // destination sees on its own.
  if (!sent.ok && !accepted) abort.abort(new Deno.errors.Interrupted("the source failed"));
  return { source: sent, destination: await received, destinationMemory };
}

// Only the pages a test names are dirty, and only at the harvest it names:
// `at(harvest, ram)` returns the pages to report (and may write them first).
export function scriptedSource(at: (harvest: number) => number[]): DirtySource {
  let harvest = 0;
  return {
    name: "scripted",
    scope: "precise",
    start() {},
    stop() {},
    coverInto() {},
    harvestInto(bitmaps: DirtyBitmap[]): SourceHarvest {
      const pages = at(harvest++);
      for (const p of pages) bitmaps[0].setRange(p, 1);
      return { source: "scripted", dirtyPages: pages.length, scope: "precise", coveredPages: 0 };
    },
  };
}

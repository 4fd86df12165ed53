// Complete: the source digests its paused RAM while the destination digests
// its own; END carries the source's digest, and the destination's verdict
// must carry the same one.

import { peerText } from "../stream/peer_text.ts";
import { MigrationError } from "./errors.ts";
import type { MigrationRun } from "./_run.ts";

export async function complete(run: MigrationRun): Promise<void> {
  const { options, report } = run;
  run.checkSignal();
  run.enter("complete");
  const imageAt = performance.now();
  const digest = options.digest();
  report.verifyMs = performance.now() - imageAt;
  report.sourceDigest = digest.hex;
  await run.sink!.writeEnd(digest.bytes);
  report.destinationDigest = options.destinationReady ? await options.destinationReady() : null;
  if (report.destinationDigest !== null && report.destinationDigest !== digest.hex) {
    throw new MigrationError(
      "complete",
      `The destination verified a different image: its digest ${
        report.destinationDigest === ""
          ? "is empty"
          : `${peerText(report.destinationDigest, { max: 128 })} differs`
      } from the source's ${digest.hex}`,
    );
  }
}

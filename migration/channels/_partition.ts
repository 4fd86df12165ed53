// Splits one call's page runs among the channels: contiguous pieces of about
// equal page counts, so each channel owns a disjoint page range of the
// iteration (a run is cut where a piece ends).

/**
 * Splits `runs` (pairs of first page and count, ascending) into `n` pieces
 * of about equal page counts; piece i goes to channel i. A piece may be empty.
 */
export function splitRuns(runs: readonly number[], n: number): number[][] {
  let total = 0;
  for (let k = 1; k < runs.length; k += 2) total += runs[k];
  const pieces: number[][] = Array.from({ length: n }, () => []);
  const share = Math.ceil(total / n);
  let piece = 0;
  let room = share;
  for (let k = 0; k < runs.length; k += 2) {
    let first = runs[k];
    let left = runs[k + 1];
    while (left > 0) {
      const take = Math.min(left, room);
      pieces[piece].push(first, take);
      first += take;
      left -= take;
      room -= take;
      if (room === 0 && piece < n - 1) {
        piece++;
        room = share;
      }
    }
  }
  return pieces;
}

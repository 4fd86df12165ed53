// Statistics the benches share.

/**
 * The median (upper median for an even count).
 *
 * @param xs The samples (not modified).
 * @returns The median, or `NaN` for no samples.
 */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

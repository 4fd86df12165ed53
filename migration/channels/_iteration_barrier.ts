// The destination's iteration barrier across parallel channels (QEMU's
// MULTIFD_FLAG_SYNC): a channel that reads iteration marker k applies
// nothing more until every channel has read marker k, so a page resent in a
// later iteration on one channel is never overwritten by its earlier copy
// still in flight on another.

export class IterationBarrier {
  #reached: number[];
  #done: boolean[];
  #waiters: { n: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  #failure: Error | undefined;

  constructor(count: number) {
    this.#reached = new Array(count).fill(-1);
    this.#done = new Array(count).fill(false);
  }

  // Channel `index` read marker `n`; resolves once every channel has.
  arrive(index: number, n: number): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    this.#reached[index] = n;
    const wait = new Promise<void>((resolve, reject) => this.#waiters.push({ n, resolve, reject }));
    this.#settle();
    return wait;
  }

  // Channel `index` has ended (its COMPLETE): it reaches no later marker.
  finish(index: number): void {
    this.#done[index] = true;
    this.#settle();
  }

  // Every channel ended at the same iteration, else the reason it did not.
  endProblem(): string | undefined {
    const last = this.#reached[0];
    const i = this.#reached.findIndex((n) => n !== last);
    if (i < 0) return undefined;
    return `Channel ${i} ended after iteration ${this.#reached[i]}, channel 0 after ${last}`;
  }

  fail(e: Error): void {
    this.#failure ??= e;
    for (const w of this.#waiters) w.reject(e);
    this.#waiters = [];
  }

  #settle(): void {
    const low = Math.min(...this.#reached);
    const keep = [];
    for (const w of this.#waiters) {
      if (w.n <= low) {
        w.resolve();
        continue;
      }
      // A channel that has ended below this marker will never reach it.
      const j = this.#done.findIndex((d, i) => d && this.#reached[i] < w.n);
      if (j >= 0) {
        this.fail(
          new RangeError(
            `Channel ${j} ended after iteration ${this.#reached[j]}, before iteration ${w.n}`,
          ),
        );
        return;
      }
      keep.push(w);
    }
    this.#waiters = keep;
  }
}

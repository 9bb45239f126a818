/**
 * A FIFO limit on concurrent async work. Sandbox starts are CPU-bound
 * (clone, mounts, a shell per terminal): a herd of 100 started all at
 * once shares the CPU until every one finishes at about the same late
 * moment; through a gate of a few at a time, the first are ready early and
 * the last no later.
 */
export class Gate {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** How many wait to enter. */
  get waiting(): number {
    return this.queue.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      // The slot passes straight to the next waiter (running stays the same).
      if (next) next();
      else this.running--;
    }
  }
}

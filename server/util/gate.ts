/**
 * A FIFO limit on concurrent async work. Sandbox starts are CPU-bound
 * (clone, mounts, a shell per terminal): a herd of 100 started all at
 * once shares the CPU until every one finishes at about the same late
 * moment; through a gate of a few at a time, the first are ready early and
 * the last no later.
 *
 * Work marked `low` (a lab's second and third shells) enters only when no
 * other work waits: in a herd, every student's first prompt comes before
 * anyone's other shells, instead of each start carrying all of its own.
 */
export class Gate {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private readonly lowQueue: (() => void)[] = [];

  constructor(readonly limit: number) {}

  /** How many wait to enter (low priority included). */
  get waiting(): number {
    return this.queue.length + this.lowQueue.length;
  }

  async run<T>(fn: () => Promise<T>, priority: 'normal' | 'low' = 'normal'): Promise<T> {
    const free = this.running < this.limit && (priority === 'normal' || this.queue.length === 0);
    if (free) this.running++;
    else await new Promise<void>((r) => (priority === 'low' ? this.lowQueue : this.queue).push(r));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift() ?? this.lowQueue.shift();
      // The slot passes straight to the next waiter (running stays the same).
      if (next) next();
      else this.running--;
    }
  }
}

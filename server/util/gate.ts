/**
 * A FIFO limit on concurrent async work. Sandbox starts are CPU-bound
 * (clone, mounts, a shell per terminal): a herd of 100 started all at
 * once shares the CPU until every one finishes at about the same late
 * moment; through a gate of a few at a time, the first are ready early and
 * the last no later.
 *
 * Low-priority work (a lab's second and third shells, runLow) enters only
 * when no other work waits: in a herd, every student's first prompt comes
 * before anyone's other shells, instead of each start carrying all of its
 * own. It is not starved: work that waited `lowMaxWaitMs` goes first, and
 * promote() puts it at the head of the line (a student typed into it).
 */

interface Waiter {
  go: () => void;
  at: number;
}

export class Gate {
  private running = 0;
  private readonly queue: Waiter[] = [];
  private readonly lowQueue: Waiter[] = [];

  constructor(
    readonly limit: number,
    private readonly lowMaxWaitMs = 5_000,
  ) {}

  /** How much normal work waits to enter (low-priority work not counted). */
  get waiting(): number {
    return this.queue.length;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((go) => this.queue.push({ go, at: Date.now() }));
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Low-priority work; `promote()` moves it, while it waits, ahead of all other waiting work. */
  runLow<T>(fn: () => Promise<T>): { done: Promise<T>; promote(): void } {
    let waiter: Waiter | undefined;
    let promoted = false;
    const done = (async () => {
      if (this.running < this.limit && this.queue.length === 0) this.running++;
      else
        await new Promise<void>((go) => {
          waiter = { go, at: Date.now() };
          if (promoted) this.queue.unshift(waiter);
          else this.lowQueue.push(waiter);
        });
      try {
        return await fn();
      } finally {
        this.release();
      }
    })();
    return {
      done,
      promote: () => {
        promoted = true;
        const i = waiter ? this.lowQueue.indexOf(waiter) : -1;
        if (i < 0 || !waiter) return;
        this.lowQueue.splice(i, 1);
        this.queue.unshift(waiter);
      },
    };
  }

  private release(): void {
    const oldest = this.lowQueue[0];
    const next =
      oldest && Date.now() - oldest.at >= this.lowMaxWaitMs
        ? this.lowQueue.shift()
        : (this.queue.shift() ?? this.lowQueue.shift());
    // The slot passes straight to the next waiter (running stays the same).
    if (next) next.go();
    else this.running--;
  }
}

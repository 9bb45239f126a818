/**
 * Polling for a condition the kernel gives no event for (a cgroup emptying, a
 * process turning into a zombie), without blocking the event loop.
 *
 * Killed processes usually finish exiting within microseconds, so the first
 * few checks only yield to the event loop (setImmediate); after that the
 * delay backs off to `maxDelayMs`. A fixed 2 ms timer cost every teardown
 * 2-5 ms of pure waiting (docs/benchmarks.md).
 */
const BACKOFF_MS = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2];

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => (ms === 0 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

/**
 * Calls `check` until it returns true (resolves true) or `timeoutMs` has
 * passed (resolves false). `check` runs at once, then after each delay.
 */
export async function pollUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  maxDelayMs = 5,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await delay(Math.min(maxDelayMs, BACKOFF_MS[i] ?? maxDelayMs));
  }
}

/** Lets the event loop turn before going on (setImmediate: the I/O callbacks waiting run first). */
export function nextTurn(): Promise<void> {
  return delay(0);
}

/**
 * `f` over `items`, yielding to the event loop (setImmediate) after every
 * `slice` of them: for host reads that are each cheap but, by the hundred,
 * would hold every terminal's echo (a class's hundreds of disks or children).
 * Thread-pool reads do not help there: their completions run back to back
 * on the loop, each costlier than the read itself.
 */
export async function mapInSlices<T, R>(
  items: readonly T[],
  f: (item: T) => R,
  slice = 32,
): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i++) {
    if (i > 0 && i % slice === 0) await delay(0);
    out.push(f(items[i] as T));
  }
  return out;
}

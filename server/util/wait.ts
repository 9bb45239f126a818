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

/**
 * The event loop delay that /healthz reports (server/util/loop-delay.ts):
 * a loop held busy shows in the figures; each window starts afresh.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoopDelayMonitor } from '../../server/util/loop-delay';

const busy = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until);
};
const ticks = (n: number) => new Promise((r) => setTimeout(r, n * 10));

test('a loop held busy for 400 ms shows as a delay of at least that, and the next window starts afresh', async () => {
  const m = new LoopDelayMonitor(600);
  try {
    await ticks(3); // the histogram's timer has run
    busy(400);
    await ticks(2);
    const held = m.stats();
    assert.ok(held.max >= 390, `max ${held.max} ms after a 400 ms block`);
    // Wait for a window with no block in it to end: it reports no such delay.
    await new Promise((r) => setTimeout(r, 1300));
    const next = m.stats();
    assert.ok(next.max < 300, `the next window still reports ${next.max} ms`);
    assert.equal(next.windowS, 1);
  } finally {
    m.stop();
  }
});

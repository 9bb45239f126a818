/**
 * Input backpressure (docs/terminals.md): `term:input` is acknowledged only
 * once the pty's queue has room, so a client sends a big paste chunk by
 * chunk; the pty's drain wakes it, and past the hard cap input is dropped.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { INPUT_HARD_CAP, Terminal } from '../../server/terminals/terminal';
import { fakePty } from '../helpers/fake-pty';

test('input waits while the pty queue is full, goes on at its drain, and past the cap is dropped', async () => {
  const p = fakePty();
  const t = new Terminal('t1', 'T1', p.pty, 80, 24);
  p.data('$ '); // the first output releases held input
  let pending = 0;
  Object.defineProperty(p.pty, 'pendingInput', { get: () => pending });

  assert.equal(await t.input('a'), true, 'an empty queue: acknowledged at once');
  pending = 200 * 1024; // the shell stopped reading
  let acked = false;
  const waiting = t.input('b'.repeat(1000)).then((ok) => (acked = ok));
  await new Promise((r) => setImmediate(r));
  assert.equal(acked, false, 'not acknowledged while the queue is above its high-water mark');
  p.drain();
  await new Promise((r) => setImmediate(r));
  assert.equal(acked, false, 'a drain that leaves it full wakes nobody');
  pending = 1000;
  p.drain();
  await waiting;
  assert.equal(acked, true);

  pending = INPUT_HARD_CAP;
  assert.equal(await t.input('c'), false, 'beyond the hard cap: dropped, said so');
  assert.deepEqual(p.calls.writes, ['a', 'b'.repeat(1000)]);
});

test('input waiting at exit is released', async () => {
  const p = fakePty();
  const t = new Terminal('t2', 'T2', p.pty, 80, 24);
  p.data('$ ');
  Object.defineProperty(p.pty, 'pendingInput', { get: () => 300 * 1024 });
  const waiting = t.input('x');
  p.exit(0);
  assert.equal(await waiting, true);
});

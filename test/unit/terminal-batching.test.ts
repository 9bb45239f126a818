/**
 * Terminal output batching (docs/terminals.md#leading-edge-batching): the
 * first output after a quiet period goes out at once, what follows within
 * the window is batched - except the echo of typed input, which goes out at
 * once even inside a window, so fast typing does not wait for the tick.
 * Asserted by what was sent synchronously, not by timing.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { Terminal } from '../../server/terminals/terminal';
import { fakePty } from '../helpers/fake-pty';

test('inside a batching window, output waits for the tick, but the echo of a typed key does not', async () => {
  const p = fakePty();
  const t = new Terminal('t1', 'T1', p.pty, 80, 24);
  const sent: string[] = [];
  t.attach((_offset, data) => sent.push(data.toString()), 0);
  p.data('prompt# '); // leading edge: at once
  assert.deepEqual(sent, ['prompt# ']);
  p.data('more'); // inside the window, no input: batched
  assert.deepEqual(sent, ['prompt# ']);
  await t.input('a');
  p.data('a'); // the echo of the key: at once, with what was batched before it
  assert.deepEqual(sent, ['prompt# ', 'morea']);
  p.data('b'); // output the key did not ask for: batched again
  assert.deepEqual(sent, ['prompt# ', 'morea']);
  await t.input('x'.repeat(4096)); // a paste: its output is batched like any
  p.data('xxxx');
  assert.deepEqual(sent, ['prompt# ', 'morea']);
  // The tick sends the rest.
  for (let i = 0; i < 500 && sent.length < 3; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(sent, ['prompt# ', 'morea', 'bxxxx']);
  t.kill();
});

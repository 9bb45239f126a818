/**
 * The panel feed (server/labs/panels.ts) passes on at most two updates a
 * second, and never loses the last one: the reader in the sandbox prints a
 * sample only when it changed (or every 5 s), so an update held back for the
 * gap must be sent once the gap is over, or the panel lags the shell by up
 * to 5 s.
 */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { PanelFeed } from '../../server/labs/panels';
import type { PanelUpdate } from '../../server/protocol/index';
import type { Sandbox } from '../../server/sandbox/index';

/** A feed over a stand-in for the gatherer's process: its stdout is ours to write. */
function feed() {
  const child = Object.assign(new EventEmitter(), {
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    stdin: new PassThrough(),
    pid: 1,
    kill: () => true,
  });
  const sandbox = { spawnPipes: () => child } as unknown as Sandbox;
  const got: PanelUpdate[] = [];
  /** When each was sent (ms). */
  const at: number[] = [];
  const f = new PanelFeed(sandbox, 'step', [], (u) => {
    got.push(u);
    at.push(Date.now());
  });
  f.start();
  const sample = (...ts: number[]) =>
    child.stdout.write(ts.map((t) => `${JSON.stringify({ t, panels: [] })}\n`).join(''));
  return { f, got, at, sample, child };
}

/** Waits for a condition (bounded generously; the gap is under half a second). */
async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('updates that come too soon wait for the gap; the latest of them is sent, not lost', async () => {
  const { f, got, at, sample, child } = feed();
  // Three samples in one read: the first goes at once, the next two are
  // within the gap (nothing here depends on this process's speed).
  sample(1, 2, 3);
  await until('the held-back latest is sent', () => got.length === 2);
  assert.deepEqual(
    got.map((u) => u.t),
    [1, 3],
  );
  assert.deepEqual(f.counts, { sent: 2, dropped: 1 });
  // At most two a second: the second not before the gap (a timer never fires early).
  assert.ok((at[1] ?? 0) - (at[0] ?? 0) >= 449, `sent ${(at[1] ?? 0) - (at[0] ?? 0)} ms apart`);
  sample(4);
  await until('the next is sent', () => got.length === 3);
  f.stop();
  // Stopped: nothing more, even a line that was already in the pipe (the
  // feed's own reader has seen it once ours has).
  const seen = new Promise((r) => child.stdout.once('data', r));
  sample(5);
  await seen;
  await new Promise((r) => setImmediate(r));
  assert.equal(got.length, 3);
});

test('a held update whose timer runs late never follows a newer one', async () => {
  const { f, got, sample } = feed();
  sample(1, 2);
  await until('the first is sent', () => got.length === 1);
  // The event loop busy past the gap: 2's timer is due but has not run when 3 comes.
  const busyUntil = Date.now() + 500;
  while (Date.now() < busyUntil);
  sample(3);
  await until('3 is sent', () => got.length >= 2);
  // Any timer due by now has run (it was due before this one).
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(
    got.map((u) => u.t),
    [1, 3],
  );
  f.stop();
});

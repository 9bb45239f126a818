/**
 * The panel feed (server/labs/panels.ts) passes on at most two updates a
 * second, and never loses the last one: the reader in the sandbox prints a
 * sample only when it changed (or every 5 s), so an update held back for the
 * gap must be sent once the gap is over, or the panel lags the shell (seen
 * in Chromium: a namespace made with a Run button missing from the panel
 * while the check had passed).
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
  const f = new PanelFeed(sandbox, 'step', [], (u) => got.push(u));
  f.start();
  const sample = (t: number) => child.stdout.write(`${JSON.stringify({ t, panels: [] })}\n`);
  return { f, got, sample };
}

/** Waits for a condition (bounded generously; the gap is under half a second). */
async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 10_000;
  while (!ok()) {
    if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('an update that came too soon is sent after the gap; of several, the latest', async () => {
  const { f, got, sample } = feed();
  sample(1);
  await until('the first is sent at once', () => got.length === 1);
  sample(2);
  sample(3);
  await until('the held-back latest is sent', () => got.length === 2);
  assert.deepEqual(
    got.map((u) => u.t),
    [1, 3],
  );
  assert.deepEqual(f.counts, { sent: 2, dropped: 1 });
  f.stop();
});

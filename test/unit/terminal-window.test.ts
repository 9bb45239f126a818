/**
 * Each attachment's window (docs/terminals.md#flow-control): 256 KiB at
 * first, grown for a client that acknowledges a full window quickly (a
 * flood is not held to a round trip per 256 KiB), never beyond 1 MiB, and
 * never grown for a client whose acks lag (^C's prompt must not queue
 * behind more of its rendering).
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LIMITS } from '../../server/protocol/index';
import { Terminal } from '../../server/terminals/terminal';
import { fakePty } from '../helpers/fake-pty';

/** Feeds a flood and acks `rounds` times, `lagMs` after each batch arrives; returns the most ever unacked. */
async function flood(lagMs: number, rounds: number): Promise<number> {
  const p = fakePty();
  const t = new Terminal('t1', 'T1', p.pty, 80, 24, { replayBytes: 8 * 1024 * 1024 });
  let sent = 0;
  let acked = 0;
  let most = 0;
  const { token } = t.attach((_offset, data) => {
    sent += data.length;
    most = Math.max(most, sent - acked);
  }, undefined);
  const chunk = 'y\n'.repeat(32 * 1024);
  for (let i = 0; i < rounds; i++) {
    while (t.replay.endOffset - sent < 2 * LIMITS.maxWindowBytes) p.data(chunk);
    if (lagMs) await sleep(lagMs);
    const n = sent - acked;
    acked = sent;
    t.ack(token, n);
  }
  return most;
}

test('a client that acks at once gets a bigger window, up to maxWindowBytes', async () => {
  const most = await flood(0, 12);
  assert.ok(most > LIMITS.highWaterBytes, `never more than ${most} bytes in flight`);
  assert.ok(most <= LIMITS.maxWindowBytes, `${most} bytes in flight`);
});

test('a client whose acks lag keeps the 256 KiB window', async () => {
  const most = await flood(30, 8);
  assert.equal(most, LIMITS.highWaterBytes);
});

/**
 * A terminal listed before its shell exists (a lab's second and third
 * shells start after a herd's first prompts, server/util/gate.ts): clients
 * attach, type and resize meanwhile, and nothing of it is lost when the pty
 * arrives; a terminal closed or failed before then ends like a shell would.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { Terminal } from '../../server/terminals/terminal';
import { Gate } from '../../server/util/gate';
import { fakePty } from '../helpers/fake-pty';

test('before its pty: attach, input and resize wait for it, then the shell gets them in order', () => {
  const exits: number[] = [];
  const t = new Terminal('t2', 'T2', undefined, 80, 24, { onExit: (c) => exits.push(c) });
  const sent: string[] = [];
  t.attach((_o, d) => sent.push(d.toString()), 0);
  assert.equal(t.spawned, false);
  assert.equal(t.pid, 0);
  void t.input('echo one\r');
  void t.input('echo two\r');
  t.resize(100, 30);
  const p = fakePty();
  t.adopt(p.pty, 80, 24); // spawned at the size it had when the spawn was asked for
  assert.equal(t.spawned, true);
  assert.deepEqual(p.calls.resizes, [[100, 30]]);
  assert.deepEqual(p.calls.writes, ['echo one\r', 'echo two\r']);
  p.data('root@lab:~# ');
  assert.deepEqual(sent, ['root@lab:~# ']);
  void t.input('x');
  assert.deepEqual(p.calls.writes.at(-1), 'x');
  p.exit(0);
  assert.deepEqual(exits, [0]);
});

test('closed before its pty: it ends as killed, the spawner is told not to spawn, a late pty is killed', () => {
  const exits: number[] = [];
  const t = new Terminal('t3', 'T3', undefined, 80, 24, { onExit: (c) => exits.push(c) });
  assert.equal(t.cancelled, false);
  t.kill();
  assert.equal(t.cancelled, true);
  assert.deepEqual(t.exited, { code: 137 });
  assert.deepEqual(exits, [137]);
  const p = fakePty();
  t.adopt(p.pty);
  assert.equal(p.calls.kills, 1);
  p.exit(0, 9);
  assert.deepEqual(exits, [137], 'one exit, not two');
});

test('a spawn that fails: its error is the output, and the terminal ends with 125', () => {
  const t = new Terminal('t2', 'T2', undefined, 80, 24);
  const sent: string[] = [];
  t.attach((_o, d) => sent.push(d.toString()), 0);
  t.fail('[join: the sandbox is gone]');
  assert.deepEqual(sent, ['[join: the sandbox is gone]\r\n']);
  assert.deepEqual(t.exited, { code: 125 });
});

test('gate: low-priority work waits for all other work, also work queued after it', async () => {
  const gate = new Gate(1);
  const order: string[] = [];
  let release!: () => void;
  const first = gate.run(
    () =>
      new Promise<void>((r) => {
        order.push('start A');
        release = r;
      }),
  );
  const low = gate.run(async () => void order.push('T2 of A'), 'low');
  const b = gate.run(async () => void order.push('start B'));
  const c = gate.run(async () => void order.push('start C'));
  assert.equal(gate.waiting, 3);
  release();
  await Promise.all([first, low, b, c]);
  assert.deepEqual(order, ['start A', 'start B', 'start C', 'T2 of A']);
  // With a free slot and nothing waiting, low work starts at once.
  const idle = new Gate(2);
  let ran = false;
  await idle.run(async () => void (ran = true), 'low');
  assert.equal(ran, true);
});

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

test('before its pty: attach, input and resize wait for it; input reaches the shell after its first output', () => {
  const exits: number[] = [];
  let wanted = 0;
  const t = new Terminal('t2', 'T2', undefined, 80, 24, {
    onExit: (c) => exits.push(c),
    onEarlyInput: () => wanted++,
  });
  const sent: string[] = [];
  t.attach((_o, d) => sent.push(d.toString()), 0);
  assert.equal(t.spawned, false);
  assert.equal(t.pid, 0);
  void t.input('echo one\r');
  void t.input('echo two\r');
  assert.equal(wanted, 2, 'the spawner hears that someone types into it');
  t.resize(100, 30);
  const p = fakePty();
  t.adopt(p.pty, 80, 24); // spawned at the size it had when the spawn was asked for
  assert.equal(t.spawned, true);
  assert.deepEqual(p.calls.resizes, [[100, 30]]);
  // The host pty is still in cooked mode until the helper's relay runs: it would echo.
  assert.deepEqual(p.calls.writes, []);
  void t.input('echo three\r');
  assert.deepEqual(p.calls.writes, []);
  p.data('root@lab:~# ');
  assert.deepEqual(sent, ['root@lab:~# ']);
  assert.deepEqual(p.calls.writes, ['echo one\r', 'echo two\r', 'echo three\r']);
  void t.input('x');
  assert.deepEqual(p.calls.writes.at(-1), 'x');
  assert.equal(wanted, 2);
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
  p.exit(137);
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
  const low = gate.runLow(async () => void order.push('T2 of A'));
  const low2 = gate.runLow(async () => void order.push('T3 of A'));
  const b = gate.run(async () => void order.push('start B'));
  const c = gate.run(async () => void order.push('start C'));
  assert.equal(gate.waiting, 2, 'low-priority work is not counted');
  // Someone typed into T3: it goes before everything that waits.
  low2.promote();
  release();
  await Promise.all([first, low.done, low2.done, b, c]);
  assert.deepEqual(order, ['start A', 'T3 of A', 'start B', 'start C', 'T2 of A']);
  // With a free slot and nothing waiting, low work starts at once.
  const idle = new Gate(2);
  let ran = false;
  await idle.runLow(async () => void (ran = true)).done;
  assert.equal(ran, true);
});

test('gate: low-priority work that waited long enough goes before newer normal work', async () => {
  const gate = new Gate(1, 50);
  const order: string[] = [];
  let release!: () => void;
  const first = gate.run(() => new Promise<void>((r) => (release = r)));
  const low = gate.runLow(async () => void order.push('low'));
  await new Promise((r) => setTimeout(r, 80)); // older than 50 ms now
  const normal = gate.run(async () => void order.push('normal'));
  release();
  await Promise.all([first, low.done, normal]);
  assert.deepEqual(order, ['low', 'normal']);
});

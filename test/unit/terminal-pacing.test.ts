/**
 * Fair output under contention (docs/terminals.md#output-under-contention):
 * a flood is paced only while the host is busy and someone else types; a
 * burst never waits; alone, or on an idle host, a flood runs at full speed.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  hostCpuBusy,
  OutputPacer,
  PACE_BURST_BYTES,
  PACE_RATE_BYTES,
  parseCpuLine,
} from '../../server/terminals/pacer';
import { Terminal } from '../../server/terminals/terminal';
import { fakePty } from '../helpers/fake-pty';

const MiB = 1024 * 1024;

function pacer(busy: number | undefined) {
  let now = 0;
  const state = { busy, calls: 0 };
  const p = new OutputPacer({
    now: () => now,
    hostBusy: () => {
      state.calls++;
      return state.busy;
    },
  });
  return { p, state, advance: (ms: number) => (now += ms) };
}

test('a flood with nobody else typing is never paced, however busy the host', () => {
  const { p } = pacer(1);
  const flood = {};
  p.noteInput(flood); // its own ^C or keys do not count
  for (let i = 0; i < 64; i++) assert.equal(p.charge(flood, flood, MiB), 0);
});

test('a flood while someone else types on a busy host waits for its share', () => {
  const { p, advance } = pacer(0.9);
  const flood = {};
  const typist = {};
  p.noteInput(typist);
  assert.equal(p.charge(flood, flood, PACE_BURST_BYTES), 0, 'the burst never waits');
  const wait = p.charge(flood, flood, 64 * 1024);
  assert.ok(
    Math.abs(wait - (64 * 1024 * 1000) / PACE_RATE_BYTES) < 1,
    `waits ${wait} ms for 64 KiB`,
  );
  // After the wait the debt is paid; a second of quiet refills the burst only.
  advance(wait);
  advance(10_000);
  p.noteInput(typist);
  assert.equal(p.charge(flood, flood, PACE_BURST_BYTES), 0);
  assert.ok(p.charge(flood, flood, 1024) > 0);
});

test('an idle host or an old keystroke paces nothing', () => {
  const idle = pacer(0.3);
  const [flood, typist] = [{}, {}];
  idle.p.noteInput(typist);
  for (let i = 0; i < 8; i++) assert.equal(idle.p.charge(flood, flood, MiB), 0);
  const old = pacer(1);
  old.p.noteInput(typist);
  old.advance(2_500);
  for (let i = 0; i < 8; i++) assert.equal(old.p.charge(flood, flood, MiB), 0);
  const unknown = pacer(undefined); // /proc/stat unreadable: never paced
  unknown.p.noteInput(typist);
  assert.equal(unknown.p.charge(flood, flood, 4 * MiB), 0);
});

test('once contended, pacing holds for a while (pacing itself makes the host look idle)', () => {
  const { p, state, advance } = pacer(0.95);
  const [flood, typist] = [{}, {}];
  p.noteInput(typist);
  assert.ok(p.charge(flood, flood, 2 * MiB) > 0);
  state.busy = 0.2;
  advance(1_000);
  p.noteInput(typist);
  assert.ok(p.charge(flood, flood, 2 * MiB) > 0, 'still paced 1 s later');
  advance(2_500); // a typist who pauses: typing lapses after 2 s, pacing with it
  assert.equal(p.charge(flood, flood, 2 * MiB), 0, 'unpaced: nobody typed for 2.5 s');
  p.noteInput(typist);
  assert.ok(p.charge(flood, flood, 2 * MiB) > 0, 'paced again at the next keystroke');
  advance(30_000);
  p.noteInput(typist);
  assert.equal(p.charge(flood, flood, 2 * MiB), 0, 'released once the host stays idle');
  // The host's counters are read at most every 250 ms, however many chunks come.
  const calls = state.calls;
  for (let i = 0; i < 100; i++) p.charge(flood, flood, 64 * 1024);
  assert.equal(state.calls, calls);
});

test('host busy fraction from /proc/stat deltas (idle and iowait are not busy)', () => {
  assert.deepEqual(parseCpuLine('cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3 4\n'), {
    busy: 20,
    total: 100,
  });
  assert.equal(parseCpuLine('intr 1 2 3'), undefined);
  const lines = [
    'cpu  10 0 10 70 10 0 0 0',
    'cpu  100 0 40 80 10 0 0 0',
    'cpu  200 0 40 80 10 0 0 0',
    'cpu  300 0 40 80 10 0 0 0',
  ];
  let now = 0;
  const busy = hostCpuBusy(
    () => parseCpuLine(lines.shift() ?? ''),
    () => now,
    1000,
  );
  assert.equal(busy(), undefined, 'the first call has nothing to compare with');
  now += 300;
  assert.equal(busy(), 120 / 130);
  now += 60_000;
  assert.equal(busy(), undefined, 'a minute-old baseline says nothing about now');
  now += 300;
  assert.equal(busy(), 1, 'measured from the fresh baseline');
  now += 300;
  assert.equal(busy(), undefined, 'unreadable');
});

test("one student's terminals share one share; typing in any other terminal counts", () => {
  const { p } = pacer(1);
  const [t1, t2, student, other] = [{}, {}, {}, {}];
  p.noteInput(t1); // the flooding terminal's own keys (^C) do not count
  assert.equal(p.charge(t1, student, 4 * MiB), 0, 'nobody else types: full speed');
  p.noteInput(t2); // the student's own second terminal does: its echo suffers too
  assert.ok(p.charge(t1, student, 64 * 1024) > 0, 'paced once another terminal is typed into');
  // Another terminal of the same student draws on the same (empty) share...
  p.noteInput(other);
  assert.ok(p.charge(t2, student, 1024) > 0);
  // ...while another student's starts full.
  assert.equal(p.charge(other, other, 128 * 1024), 0);
  // The shortest wait is long enough not to churn a pause per pty read.
  assert.ok(p.charge(t1, student, 1) >= 20);
});

/** A client that acks everything at once: only the pacer can hold the pty. */
function attachAcking(t: Terminal): void {
  let token = 0;
  token = t.attach((_o, d) => t.ack(token, d.length), undefined).token;
}

/** Resolves once the fake pty is resumed; fails if it is still paused 10 s later. */
async function untilResumed(pty: ReturnType<typeof fakePty>): Promise<void> {
  const end = Date.now() + 10_000;
  while (pty.calls.paused) {
    assert.ok(Date.now() < end, 'still paused 10 s later');
    await sleep(5);
  }
}

test("a paced terminal stops reading its pty and resumes after its wait; others' output flows", async () => {
  const p = new OutputPacer({ hostBusy: () => 1, rateBytes: 4 * MiB });
  const flood = fakePty();
  const t = new Terminal('t1', 'T1', flood.pty, 80, 24, { pacer: p, replayBytes: 4 * MiB });
  const quiet = fakePty();
  const q = new Terminal('t2', 'T2', quiet.pty, 80, 24, { pacer: p });
  attachAcking(t);
  attachAcking(q);
  await q.input('x');
  flood.data('y\n'.repeat(PACE_BURST_BYTES / 2));
  assert.equal(flood.calls.paused, false, 'the burst is not paced');
  flood.data('y\n'.repeat(64 * 1024)); // 128 KiB beyond: ~31 ms at 4 MiB/s
  assert.equal(flood.calls.paused, true, 'paced');
  quiet.data('x');
  assert.equal(quiet.calls.paused, false);
  await untilResumed(flood);
  t.kill();
  flood.exit(137);
  q.kill();
  quiet.exit(137);
});

/**
 * A pacer on a busy host with someone else typing, at 64 KiB/s, and a
 * terminal on it that has just produced `beyond` bytes past its burst (so it
 * waits beyond / 64 KiB seconds). `now`: the pacer's clock (default: real).
 */
function pacedFlood(beyond: number, p = busyPacer()) {
  const pty = fakePty();
  const t = new Terminal('t1', 'T1', pty.pty, 80, 24, { pacer: p, replayBytes: 4 * MiB });
  attachAcking(t);
  pty.data('y\n'.repeat(PACE_BURST_BYTES / 2 + beyond / 2));
  return { p, t, pty };
}

function busyPacer(now?: () => number): OutputPacer {
  const p = new OutputPacer({ hostBusy: () => 1, rateBytes: 64 * 1024, ...(now && { now }) });
  p.noteInput({}); // someone else typed
  return p;
}

test('^C in a paced terminal resumes it at once and drops its debt, once per 2 s; what follows is paced again', async () => {
  // The pacer's clock stands still (the 2 s are its own); each flood waits
  // 16 s of real time, so no timer resumes anything during the test.
  const clock = 1_000_000;
  const {
    p,
    t,
    pty: flood,
  } = pacedFlood(
    MiB,
    busyPacer(() => clock),
  );
  assert.equal(flood.calls.paused, true);
  await t.input('\x03');
  assert.equal(flood.calls.paused, false, 'still paused after ^C');
  // The shell's answer is not held back; a flood after it waits again.
  flood.data('^C\r\n# ');
  assert.equal(flood.calls.paused, false, 'the prompt after ^C was charged the old debt');
  flood.data('y\n'.repeat(512 * 1024));
  assert.equal(flood.calls.paused, true, 'a new flood is paced');
  // A second ^C soon after does not forgive again (a flood that ignores
  // ^C, with ^C sent in a loop, would otherwise never be paced).
  await t.input('\x03');
  assert.equal(flood.calls.paused, true, 'a second ^C within 2 s resumed the flood');
  // Other keys do not forgive.
  const { t: u, pty: other } = pacedFlood(MiB, p);
  await u.input('q');
  assert.equal(other.calls.paused, true, 'a plain key resumed a paced flood');
  for (const [term, pty] of [
    [t, flood],
    [u, other],
  ] as const) {
    term.kill();
    pty.exit(137);
  }
});

test('a terminal that ends or is attached while paced neither stays paused nor leaks its timer', async () => {
  // 8 KiB beyond: 125 ms at 64 KiB/s
  const { p, t, pty: ended } = pacedFlood(8 * 1024);
  assert.equal(ended.calls.paused, true);
  ended.exit(0);
  assert.deepEqual(t.exited, { code: 0 });
  await sleep(400);
  assert.equal(ended.calls.paused, true, 'a timer left behind resumed a pty that had ended');

  const again = fakePty();
  const u = new Terminal('t2', 'T2', again.pty, 80, 24, { pacer: p, replayBytes: 4 * MiB });
  attachAcking(u);
  again.data('y\n'.repeat(PACE_BURST_BYTES / 2 + 8 * 1024)); // 16 KiB beyond: 250 ms
  assert.equal(again.calls.paused, true);
  // A second socket attaching meanwhile (its replay goes out) does not resume the pty early...
  attachAcking(u);
  assert.equal(again.calls.paused, true);
  // ...and once the wait is over, the pty resumes with no ack needed.
  await untilResumed(again);
  u.kill();
  again.exit(137);
});

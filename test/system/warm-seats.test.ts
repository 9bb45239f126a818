/**
 * Warm seats (docs/operating.md#warm-seats): sandboxes of a lab started
 * ahead, taken by students with no files of their own in the lab. What a
 * taken seat must be is a cold start's sandbox, owned by the student: their
 * disk (kept for them after), their admission place, the idle rules of any
 * lab session; and a seat that could not be handed over, or was made from
 * the lab before an edit, or outlived its server, must leave nothing behind.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe } from 'node:test';
import { hashToken } from '../../server/classroom/cohorts';
import type { ClassWarmSeats, InstructorView } from '../../server/protocol/index';
import { LabCatalog } from '../../server/labs/catalog';
import { LabSessions } from '../../server/labs/lab-sessions';
import { WARM_OWNER, type ClassWants, type WarmPool } from '../../server/labs/warm-pool';
import { timeScale } from '../../server/config';
import { detectCgroupMode, SandboxManager } from '../../server/sandbox/index';
import { Store } from '../../server/store/store';
import { Admission, DEFAULT_RATES } from '../../server/sessions/admission';
import { SessionManager } from '../../server/sessions/session-manager';
import { RequestError } from '../../server/util/errors';
import { createLogger } from '../../server/util/logger';
import { startServer } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { REPO, sleep, testConfig, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const FIX = path.join(REPO, 'test', 'fixtures', 'labs', 'persist');
const LAB = 'keep-files';
const log = createLogger('warn');
/** Each test waits for seats to be made (sysTest scales it on a slow host). */
const LONG = 300_000;

/** A server's session layer (as serve.ts wires it), with admission and `warm` seats of LAB. */
function server(
  warm: number | (() => ReadonlyMap<string, number>),
  opts: {
    parkMs?: number;
    perClient?: number;
    capacity?: number;
    manager?: SandboxManager;
    /** Seats of a lab the classes want, the student's and the others' (serve.ts: from the store). */
    held?: (lab: string, owner: string) => ClassWants;
  } = {},
) {
  const m = opts.manager ?? testManager();
  const sessions = new SessionManager(m, log, {
    parkMs: opts.parkMs ?? 3_600_000,
    onEnded: (s) => {
      if (s.lab) m.store.deleteLabSession(s.id);
    },
  });
  const catalog = new LabCatalog(FIX, detectCgroupMode(), log);
  const admission = new Admission({
    capacity: opts.capacity ?? 50,
    perClient: opts.perClient ?? 50,
    perStudent: 2,
    queueMax: 10,
    rates: DEFAULT_RATES,
  });
  const labs = new LabSessions(sessions, m, m.store, catalog, log, admission);
  const pool = labs.warmUp(typeof warm === 'number' ? new Map([[LAB, warm]]) : warm, opts.held);
  servers.push({ sessions, pool });
  return { m, sessions, labs, catalog, admission, pool };
}
const servers: { sessions: SessionManager; pool: WarmPool }[] = [];

/** Ends a test's server: no new seats, every session ended, the seats' disks dropped. */
async function shutdown(srv: { sessions: SessionManager; pool: WarmPool }): Promise<void> {
  srv.pool.close();
  await srv.sessions.endAll();
  srv.pool.sweep();
}

/** Waits (for a condition, not a time) until `f()` holds; fails with `what` after a generous bound. */
async function until(what: string, f: () => boolean): Promise<void> {
  const end = Date.now() + 180_000 * timeScale();
  while (!f()) {
    if (Date.now() > end) assert.fail(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

const ready = (pool: WarmPool) => pool.status()[LAB]?.ready ?? 0;

/** `held` of a class that wants both seats and whose only student is `member`. */
const classOfOne =
  (member: string) =>
  (_: string, owner: string): ClassWants =>
    owner === member ? { own: 2, others: 0 } : { own: 0, others: 2 };

let n = 0;
const owners: string[] = [];
function newOwner(): string {
  const o = `warm-${process.pid}-${n++}`;
  owners.push(o);
  return o;
}

describe('warm seats: a lab started ahead, taken by a student', () => {
  after(async () => {
    for (const s of servers) await shutdown(s);
    const m = testManager();
    for (const d of m.disks())
      if (d.owner === WARM_OWNER || owners.includes(d.owner)) {
        if (d.sandbox) await m.destroy(d.sandbox).catch(() => {});
        m.dropDisk(d.owner, d.name);
      }
  });

  sysTest(
    'a student takes a ready seat: the same sandbox, now theirs (disk, place, token); the pool is made again',
    SYSTEM_NEEDS,
    async () => {
      const srv = server(2);
      await until('two seats are ready', () => ready(srv.pool) === 2);
      const seats = srv.sessions.list().filter((s) => s.warm);
      assert.equal(seats.length, 2);
      for (const s of seats) {
        assert.equal(s.owner, WARM_OWNER);
        const t1 = [...s.terminals.values()][0]?.terminal;
        assert.ok(t1 && t1.replay.endOffset > 0, "a seat's shell is at its prompt");
      }
      const owner = newOwner();
      const used = srv.admission.used;
      const got = await srv.labs.start(owner, LAB, 'client-a');
      // A place changed hands, now the student's client's: the host holds no
      // more sandboxes than before (checked before the pool makes the next).
      assert.equal(srv.admission.used, used);
      const s = srv.sessions.get(got.session);
      assert.equal(s?.slot?.client, 'client-a');
      assert.ok(s && seats.includes(s), 'the student got one of the seats');
      assert.equal(s.owner, owner);
      assert.equal(s.warm, undefined);
      assert.equal(srv.labs.find(owner, LAB), s);
      assert.ok(srv.sessions.authenticate(got.session, got.token), "the token is the session's");
      assert.equal(got.notice, undefined, 'a first start says nothing');
      assert.deepEqual(
        got.terminals.map((t) => t.name),
        ['T1'],
      );
      // The lab's setup ran in it, and it is the student's disk now.
      const r = await s.sandbox.exec(['cat', '/lab/setup.txt']);
      assert.equal(r.stdout, 'from-setup\n');
      const disk = srv.m.store.getDisk(owner, LAB);
      assert.equal(disk?.id, s.sandbox.record.resources.keptDisk);
      assert.equal(
        srv.m.store.listDisks().filter((d) => d.id === disk?.id && d.owner === WARM_OWNER).length,
        0,
      );
      // Again: the same session (a reload), not another seat.
      const again = await srv.labs.start(owner, LAB, 'client-a');
      assert.equal(again.session, got.session);
      await until('the pool is full again', () => ready(srv.pool) === 2);
      // Its files stay the student's: ended, the disk is kept for them.
      await srv.labs.end(owner, LAB);
      assert.ok(srv.m.store.getDisk(owner, LAB), 'the disk is kept for the student');
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'a student with files of their own in the lab gets them back, not a seat',
    SYSTEM_NEEDS,
    async () => {
      const srv = server(1);
      await until('a seat is ready', () => ready(srv.pool) === 1);
      const owner = newOwner();
      const first = await srv.labs.start(owner, LAB);
      const sb = srv.sessions.get(first.session)?.sandbox;
      assert.ok(sb);
      assert.equal((await sb.exec(['bash', '-c', 'echo mine > /root/work.txt'])).code, 0);
      await srv.labs.end(owner, LAB);
      await until('a seat is ready again', () => ready(srv.pool) === 1);
      const seat = srv.sessions.list().find((s) => s.warm);
      const back = await srv.labs.start(owner, LAB);
      assert.notEqual(back.session, seat?.id);
      assert.match(back.notice ?? '', /your files are as you left them/);
      const r = await srv.sessions.get(back.session)?.sandbox.exec(['cat', '/root/work.txt']);
      assert.equal(r?.stdout, 'mine\n');
      assert.equal(ready(srv.pool), 1, 'the seat is still there');
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'refused by the per-client cap, the student takes nothing: the seat stays ready',
    SYSTEM_NEEDS,
    async () => {
      const srv = server(1, { perClient: 1 });
      await until('a seat is ready', () => ready(srv.pool) === 1);
      const held = srv.admission.admit('busy-client', 'someone');
      const owner = newOwner();
      await assert.rejects(
        srv.labs.start(owner, LAB, 'busy-client'),
        (e: unknown) => e instanceof RequestError && e.kind === 'rate-limited',
      );
      held.release();
      assert.equal(ready(srv.pool), 1);
      assert.equal(srv.m.store.getDisk(owner, LAB), undefined);
      assert.equal(srv.labs.find(owner, LAB), undefined);
      const seat = srv.sessions.list().find((s) => s.warm);
      assert.equal(seat?.owner, WARM_OWNER);
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'a hand-over that fails after the seat gave its place away ends the seat, and holds no place of the client',
    SYSTEM_NEEDS,
    async () => {
      const srv = server(1, { perClient: 1 });
      await until('a seat is ready', () => ready(srv.pool) === 1);
      const seat = srv.sessions.list().find((s) => s.warm);
      assert.ok(seat);
      // The last step of a take fails once (the seat's place is the client's by then).
      const handOver = srv.sessions.handOver.bind(srv.sessions);
      let fail = true;
      srv.sessions.handOver = (...args) => {
        if (!fail) return handOver(...args);
        fail = false;
        throw new Error('injected: the hand-over failed');
      };
      const owner = newOwner();
      await assert.rejects(srv.labs.start(owner, LAB, 'client-x'), /injected/);
      // At once, not after the seat's teardown: a retry must not find the
      // seat's disk as the student's (in use, or later "your files").
      assert.equal(srv.m.store.getDisk(owner, LAB), undefined);
      // Not given back without a place: it ends, and its disk goes.
      await until('the seat has ended', () => srv.sessions.get(seat.id) === undefined);
      await until('its disk is gone', () =>
        srv.m.store.listDisks().every((d) => d.id !== seat.sandbox.record.resources.keptDisk),
      );
      await until('a new seat is ready', () => ready(srv.pool) === 1);
      // The client holds no place from the failed take: within its cap of
      // one, the next start is theirs.
      const got = await srv.labs.start(owner, LAB, 'client-x');
      assert.notEqual(got.session, seat.id);
      assert.equal(srv.sessions.get(got.session)?.owner, owner);
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'seats wanted by a class come and go with it: made when wanted, the untaken ones ended and their disks dropped after',
    SYSTEM_NEEDS,
    async () => {
      // As serve.ts asks: the classes on now (here set by hand), at each fill.
      let wanted = 0;
      const srv = server(() => new Map(wanted ? [[LAB, wanted]] : []));
      srv.pool.fill();
      assert.equal(srv.sessions.list().filter((s) => s.warm).length, 0);
      wanted = 2;
      srv.pool.fill();
      await until('two seats are ready', () => ready(srv.pool) === 2);
      const owner = newOwner();
      const taken = await srv.labs.start(owner, LAB, 'client-a');
      await until('the pool is full again', () => ready(srv.pool) === 2);
      const seats = srv.sessions.list().filter((s) => s.warm);
      // The class is over: the untaken seats end, the student's session stays.
      wanted = 0;
      srv.pool.fill();
      await until('no seat is left', () =>
        seats.every((s) => srv.sessions.get(s.id) === undefined),
      );
      await until('their disks are gone', () =>
        srv.m.store.listDisks().every((d) => d.owner !== WARM_OWNER),
      );
      assert.equal(srv.sessions.get(taken.session)?.owner, owner);
      assert.ok(srv.m.store.getDisk(owner, LAB), "the student's disk stays");
      assert.deepEqual(srv.pool.status(), {});
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'a seat made before the lab was edited is never handed out, and leaves no disk',
    SYSTEM_NEEDS,
    async () => {
      const srv = server(2);
      await until('two seats are ready', () => ready(srv.pool) === 2);
      const olds = srv.sessions.list().filter((s) => s.warm);
      assert.equal(olds.length, 2);
      const old = olds[0] as (typeof olds)[number];
      // What a reload of the catalog does (serve --dev): new objects for the lab.
      const loaded = srv.catalog.labs.get(LAB);
      assert.ok(loaded);
      srv.catalog.labs.set(LAB, { ...loaded });
      // Looked at before anyone starts (as /healthz does): both are dropped.
      assert.equal(ready(srv.pool), 0);
      const owner = newOwner();
      const got = await srv.labs.start(owner, LAB);
      assert.notEqual(got.session, old.id);
      const oldDisks = olds.map((o) => o.sandbox.record.resources.keptDisk);
      await until(
        'both stale seats ended and their disks are gone',
        () =>
          olds.every((o) => !srv.sessions.get(o.id)) &&
          !srv.m.store.listDisks().some((d) => oldDisks.includes(d.id)),
      );
      await until('seats of the edited lab are ready', () => ready(srv.pool) === 2);
      // No seat lives outside the pool (one would never end).
      assert.equal(srv.sessions.list().filter((x) => x.warm).length, 2);
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    "a reset at the per-client cap takes a seat with the old place; a student who would wait in line gets a seat's place",
    SYSTEM_NEEDS,
    async () => {
      const srv = server(2, { perClient: 1, capacity: 3 });
      await until('two seats are ready', () => ready(srv.pool) === 2);
      // Ann (at her address's cap of one once she has a sandbox) resets her lab.
      const ann = newOwner();
      const first = await srv.labs.start(ann, LAB, 'ann-addr');
      await until('the pool is full again', () => ready(srv.pool) === 2);
      const again = await srv.labs.reset(ann, LAB, 'ann-addr', () => {});
      assert.notEqual(again.session, first.session);
      assert.equal(srv.sessions.get(again.session)?.slot?.client, 'ann-addr');
      await until('the pool is full again', () => ready(srv.pool) === 2);
      assert.equal(srv.admission.used, 3, 'Ann and two seats: the host is full');
      // Bob has files of his own (no seat for him) and the host is full: a
      // seat gives its place up rather than keep him in line.
      const bob = newOwner();
      const b1 = await srv.labs.start(bob, LAB, 'bob-addr');
      const b1s = srv.sessions.get(b1.session);
      assert.ok(b1s);
      assert.equal((await b1s.sandbox.exec(['bash', '-c', 'echo bob > /root/b'])).code, 0);
      await srv.labs.end(bob, LAB);
      await until('the pool is full again', () => ready(srv.pool) === 2);
      assert.equal(srv.admission.used, 3);
      const b2 = await srv.labs.start(bob, LAB, 'bob-addr');
      assert.match(b2.notice ?? '', /your files are as you left them/);
      assert.equal(ready(srv.pool), 1, 'one seat gave its place up');
      await until('the seat ended', () => srv.sessions.list().length === 3);
      assert.equal(srv.admission.used, 3);
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    "a class's seats: a student outside it takes none, nor ends one for its place on a full host; the class's student takes one",
    SYSTEM_NEEDS,
    async () => {
      const member = newOwner();
      // Both seats are a class's, and `member` is its only student here.
      const srv = server(2, {
        capacity: 2,
        held: classOfOne(member),
      });
      await until('two seats are ready', () => ready(srv.pool) === 2);
      assert.equal(srv.admission.used, 2, 'two seats: the host is full');
      const seats = srv.sessions.list().map((x) => x.id);
      const outsider = newOwner();
      await assert.rejects(
        srv.labs.start(outsider, LAB, 'outsider-addr'),
        (e: unknown) => e instanceof RequestError && e.kind === 'full',
        'a student outside the class waits in line',
      );
      assert.equal(ready(srv.pool), 2, "no seat of the class's ended for an outsider's place");
      assert.deepEqual(
        srv.sessions.list().map((x) => x.id),
        seats,
      );
      const got = await srv.labs.start(member, LAB, 'member-addr');
      assert.ok(seats.includes(got.session), "the class's student took one of its seats");
      assert.equal(ready(srv.pool), 1);
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    "on a full host a seat gives its place only to the student first in line: a class's student behind an outsider does not end one for the outsider",
    SYSTEM_NEEDS,
    async () => {
      const member = newOwner();
      const srv = server(2, {
        capacity: 3,
        held: classOfOne(member),
      });
      await until('two seats are ready', () => ready(srv.pool) === 2);
      // The class's student has files of their own in the lab (so no seat
      // for them: their files come back in a start of their own).
      const m1 = await srv.labs.start(member, LAB, 'member-addr');
      const m1s = srv.sessions.get(m1.session);
      assert.ok(m1s);
      assert.equal((await m1s.sandbox.exec(['bash', '-c', 'echo mine > /root/m'])).code, 0);
      await srv.labs.end(member, LAB);
      await until('the pool is full again', () => ready(srv.pool) === 2);
      // Someone outside the class starts (the host is full then), and another waits first in line.
      await srv.labs.start(newOwner(), LAB, 'x-addr');
      assert.equal(srv.admission.used, 3);
      const waiting = newOwner();
      await assert.rejects(srv.labs.start(waiting, LAB, 'w-addr'), /1st in line/);
      // The class's student asks: second in line. A seat that gave its place
      // up now would go to the outsider ahead.
      await assert.rejects(srv.labs.start(member, LAB, 'member-addr'), /2nd in line/);
      assert.equal(
        ready(srv.pool),
        2,
        "no seat of the class's ended for the outsider first in line",
      );
      await shutdown(srv);
    },
    { timeout: LONG },
  );

  sysTest(
    'short of room on the host disk, untaken seats give their room before any parked files go',
    SYSTEM_NEEDS,
    async () => {
      // A server over a store and disks dir of its own, with uid ranges far
      // from other tests'; what its host disk has free is made up below (a
      // figure of its own: other tests writing meanwhile change nothing).
      const base = testConfig();
      const dir = `${base.stateDir}-warm-disk-${process.pid}`;
      fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
      const config = {
        ...base,
        stateDir: dir,
        imagesDir: base.imagesDir,
        uidBase: base.uidBase + 65536 * 900,
        maxSessions: 20,
      };
      const store = new Store(dir);
      const m = new SandboxManager({ config, store, logger: log });
      const srv = server(1, { manager: m });
      const worked = async (who: string, cmd: string) => {
        const got = await srv.labs.start(who, LAB);
        const sb = srv.sessions.get(got.session)?.sandbox;
        assert.ok(sb);
        const w = await sb.exec(['bash', '-c', cmd]);
        assert.equal(w.code, 0, w.stderr);
        await srv.labs.end(who, LAB); // parked: the disk is kept
        await until('a seat is ready again', () => ready(srv.pool) === 1);
      };
      try {
        await until('a seat is ready', () => ready(srv.pool) === 1);
        // Bob and Ann worked and left: their disks are parked, Bob's holds 64 MiB.
        const bob = newOwner();
        await worked(bob, 'head -c 64M /dev/zero > /root/big && sync');
        const ann = newOwner();
        await worked(ann, 'echo mine > /root/work.txt');
        const seat = srv.sessions.list().find((x) => x.warm);
        assert.ok(seat);
        // Ann's start is 32 MiB short: dropping Bob's parked disk would do,
        // the seat's room does too, and goes first.
        const annDisk = m.disks().find((d) => d.owner === ann);
        assert.ok(annDisk);
        const st = fs.statSync(path.join(dir, 'disks', `${annDisk.id}.ext4`));
        const need = st.size - st.blocks * 512;
        const real = m.hostDiskRoom.bind(m);
        const growth = real()?.growth ?? 0;
        const free = need + growth - 32 * 1024 ** 2;
        m.hostDiskRoom = () => {
          const r = real();
          return r && { ...r, free, reserve: 0 };
        };
        const back = await srv.labs.start(ann, LAB);
        assert.match(back.notice ?? '', /your files are as you left them/);
        const r = await srv.sessions.get(back.session)?.sandbox.exec(['cat', '/root/work.txt']);
        assert.equal(r?.stdout, 'mine\n');
        assert.equal(srv.sessions.get(seat.id), undefined, 'the seat gave its room up');
        assert.equal(m.store.listDisks().filter((d) => d.owner === WARM_OWNER).length, 0);
        assert.ok(m.store.getDisk(bob, LAB), "Bob's parked files were kept");
        await srv.labs.end(ann, LAB);
      } finally {
        await shutdown(srv);
        servers.splice(
          servers.findIndex((x) => x.pool === srv.pool),
          1,
        );
        for (const d of m.disks()) {
          if (d.sandbox) await m.destroy(d.sandbox).catch(() => {});
          m.dropDisk(d.owner, d.name);
        }
        store.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { timeout: LONG },
  );

  sysTest(
    'seats never idle out; a taken one parks as any lab session',
    SYSTEM_NEEDS,
    async () => {
      const parkMs = 1500 * timeScale();
      const srv = server(1, { parkMs });
      await until('a seat is ready', () => ready(srv.pool) === 1);
      const seat = srv.sessions.list().find((s) => s.warm);
      assert.ok(seat);
      // Measured from when it became ready: three park times with nobody attached.
      await sleep(3 * parkMs);
      assert.equal(srv.sessions.get(seat.id), seat, 'an untaken seat was ended as idle');
      srv.pool.close(); // no new seat: the taken one is the only session left
      const owner = newOwner();
      const got = await srv.labs.start(owner, LAB);
      assert.equal(got.session, seat.id);
      await until('the taken seat is parked', () => !srv.sessions.get(seat.id));
      // Parked: the disk is kept for the student, no sandbox holds it.
      await until('the disk is free', () =>
        srv.m.disks().some((d) => d.owner === owner && !d.sandbox),
      );
    },
    { timeout: LONG },
  );

  sysTest(
    'serve --warm: /healthz counts the seats; after a restart without them, no seat and no seat disk is left',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const s1 = await startServer(undefined, {
        UNDERLAY_LABS_DIR: FIX,
        UNDERLAY_WARM: `${LAB}=1`,
        UNDERLAY_END_ON_STOP: '0',
      });
      let s2: Awaited<ReturnType<typeof startServer>> | undefined;
      try {
        type Health = { warm: Record<string, { wanted: number; ready: number }> };
        const health = async (url: string) =>
          (await fetch(`${url}/healthz`).then((r) => r.json())) as Health;
        const end = Date.now() + 180_000 * timeScale();
        while ((await health(s1.url)).warm[LAB]?.ready !== 1) {
          if (Date.now() > end) assert.fail(`no seat ready:\n${s1.log()}`);
          await sleep(100);
        }
        assert.equal((await health(s1.url)).warm[LAB]?.wanted, 1);
        const seatDisks = m.store.listDisks().filter((d) => d.owner === WARM_OWNER);
        assert.equal(seatDisks.length, 1);
        // Taken over HTTP, as a browser would.
        const ann = new CookieClient(s1.url);
        const seatSession = m.disks().find((d) => d.id === seatDisks[0]?.id)?.sandbox;
        const got = await ann.ok('POST', `/api/labs/${LAB}/session`);
        assert.equal(got.session, seatSession, 'Ann took the seat');
        assert.notEqual(m.disks().find((d) => d.id === seatDisks[0]?.id)?.owner, WARM_OWNER);
        const end2 = Date.now() + 180_000 * timeScale();
        while ((await health(s1.url)).warm[LAB]?.ready !== 1) {
          if (Date.now() > end2) assert.fail(`the pool was not made again:\n${s1.log()}`);
          await sleep(100);
        }
        const seat = m.store.listDisks().find((d) => d.owner === WARM_OWNER);
        assert.ok(seat, 'a new seat has a disk');
        await s1.stop(); // sandboxes kept for the next start
        // On the same port: Ann's browser comes back to the same address.
        s2 = await startServer(s1.port, { UNDERLAY_LABS_DIR: FIX });
        assert.deepEqual((await health(s2.url)).warm, {});
        assert.deepEqual(
          m.store.listDisks().filter((d) => d.owner === WARM_OWNER),
          [],
          "the seat's disk was dropped",
        );
        assert.equal(
          m.disks().find((d) => d.id === seat.id),
          undefined,
        );
        // Ann's sandbox was hers: re-adopted, not destroyed.
        const back = await ann.ok('POST', `/api/labs/${LAB}/session`);
        assert.equal(back.session, got.session);
        await ann.call('DELETE', `/api/labs/${LAB}/session`);
      } finally {
        await s1.stop();
        await s2?.stop();
      }
    },
    { timeout: LONG },
  );

  sysTest(
    "serve with a class's `warm` in cohorts.yaml: its seats made, held for its students (not another's), one fewer once a student of it has the lab; its instructor sees them",
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      // Its own class (the store is shared by runs): closed after, with its
      // student's disk dropped, so no later server wants its seats.
      const name = `warm-class-${process.pid}`;
      const labs = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-warm-class-'));
      const token = `warm-test-token-${process.pid}-${Date.now()}`;
      let srv: Awaited<ReturnType<typeof startServer>> | undefined;
      let boOwner: string | undefined;
      try {
        fs.cpSync(path.join(FIX, LAB), path.join(labs, LAB), { recursive: true });
        fs.writeFileSync(
          path.join(labs, 'cohorts.yaml'),
          [
            'cohorts:',
            `  - name: ${name}`,
            `    labs: [${LAB}]`,
            `    instructorTokenSha256: '${hashToken(token)}'`,
            `    warm: { ${LAB}: 2 }`,
            '',
          ].join('\n'),
        );
        // At info: the log names each seat's session ('warm seat ready').
        const s = await startServer(undefined, { UNDERLAY_LABS_DIR: labs, UNDERLAY_LOG: 'info' });
        srv = s;
        type Health = { warm: Record<string, { wanted: number; ready: number }> };
        const health = async () =>
          (await fetch(`${s.url}/healthz`).then((r) => r.json())) as Health;
        const waitFor = async (what: string, f: (h: Health) => boolean) => {
          const end = Date.now() + 180_000 * timeScale();
          while (!f(await health())) {
            if (Date.now() > end)
              assert.fail(`${what}:\n${JSON.stringify(await health())}\n${s.log()}`);
            await sleep(100);
          }
        };
        // What the class's instructor sees on the dashboard.
        const seen = async (): Promise<ClassWarmSeats[] | undefined> => {
          const r = await fetch(`${s.url}/api/instructor/cohorts/${name}`, {
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(r.status, 200, await r.clone().text());
          return ((await r.json()) as InstructorView).warm;
        };
        const seat = (have: number, ready: number): ClassWarmSeats[] => [
          { lab: LAB, asked: 2, have, wanting: 2 - have, ready, preparing: 0 },
        ];
        await waitFor('two seats ready', (h) => h.warm[LAB]?.ready === 2);
        assert.deepEqual(await seen(), seat(0, 2));
        const seatSessions = () =>
          [...s.log().matchAll(/"msg":"warm seat ready","lab":"[^"]+","session":"([^"]+)"/g)].map(
            (x) => x[1],
          );
        assert.equal(seatSessions().length, 2, s.log());
        // The class's seats are its students': a student of no class who
        // opens the lab meanwhile starts a sandbox of their own.
        const bo = new CookieClient(s.url);
        const boLab = (await bo.ok('POST', `/api/labs/${LAB}/session`)) as { session: string };
        boOwner = m.store.listLabSessions().find((r) => r.session === boLab.session)?.owner;
        assert.ok(
          !seatSessions().includes(boLab.session),
          "a student outside the class was given one of the class's warm seats",
        );
        assert.equal((await health()).warm[LAB]?.ready, 2, 'both seats still ready');
        await bo.call('DELETE', `/api/labs/${LAB}/session`);
        const code = m.store.getCohort(name)?.code as string;
        const ann = new CookieClient(s.url);
        await ann.ok('POST', '/api/cohorts/join', { code, name: 'Ann' });
        // Joined, not yet in the lab: both seats still wanted (she opens it next).
        assert.equal((await health()).warm[LAB]?.wanted, 2);
        const annLab = (await ann.ok('POST', `/api/labs/${LAB}/session`)) as { session: string };
        assert.ok(seatSessions().includes(annLab.session), 'a student of the class takes a seat');
        // Her seat is used: one more is wanted, not two.
        await waitFor(
          'one seat wanted and ready',
          (h) => h.warm[LAB]?.wanted === 1 && h.warm[LAB]?.ready === 1,
        );
        // The dashboard keeps its view half a second: wait for the change.
        const end = Date.now() + 30_000;
        while (JSON.stringify(await seen()) !== JSON.stringify(seat(1, 1))) {
          if (Date.now() > end) assert.deepEqual(await seen(), seat(1, 1));
          await sleep(100);
        }
        await waitFor(
          'one seat disk',
          () => m.store.listDisks().filter((d) => d.owner === WARM_OWNER).length === 1,
        );
        await ann.call('DELETE', `/api/labs/${LAB}/session`);
      } finally {
        await srv?.stop();
        const c = m.store.getCohort(name);
        if (c) {
          m.store.updateCohort({ ...c, closed: true });
          for (const mem of m.store.members(name))
            if (m.store.getDisk(mem.student, LAB)) m.dropDisk(mem.student, LAB);
        }
        if (boOwner && m.store.getDisk(boOwner, LAB)) m.dropDisk(boOwner, LAB);
        fs.rmSync(labs, { recursive: true, force: true });
      }
    },
    { timeout: LONG },
  );
  sysTest(
    "a class's student who starts the lab over (reset) when their class has its seats does not take another class's seat",
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const names = [`warm-a-${process.pid}`, `warm-b-${process.pid}`];
      const labs = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-warm-two-'));
      let srv: Awaited<ReturnType<typeof startServer>> | undefined;
      try {
        fs.cpSync(path.join(FIX, LAB), path.join(labs, LAB), { recursive: true });
        fs.writeFileSync(
          path.join(labs, 'cohorts.yaml'),
          [
            'cohorts:',
            ...names.flatMap((n) => [
              `  - name: ${n}`,
              `    labs: [${LAB}]`,
              `    instructorTokenSha256: '${hashToken(`token-of-${n}`)}'`,
              `    warm: { ${LAB}: 1 }`,
            ]),
            '',
          ].join('\n'),
        );
        const s = await startServer(undefined, { UNDERLAY_LABS_DIR: labs, UNDERLAY_LOG: 'info' });
        srv = s;
        type Health = { warm: Record<string, { wanted: number; ready: number }> };
        const waitFor = async (what: string, f: (h: Health) => boolean) => {
          const end = Date.now() + 180_000 * timeScale();
          for (;;) {
            const h = (await fetch(`${s.url}/healthz`).then((r) => r.json())) as Health;
            if (f(h)) return;
            if (Date.now() > end) assert.fail(`${what}:\n${JSON.stringify(h)}\n${s.log()}`);
            await sleep(100);
          }
        };
        const seatSessions = () =>
          [...s.log().matchAll(/"msg":"warm seat ready","lab":"[^"]+","session":"([^"]+)"/g)].map(
            (x) => x[1],
          );
        await waitFor('a seat for each class', (h) => h.warm[LAB]?.ready === 2);
        const ann = new CookieClient(s.url);
        await ann.ok('POST', '/api/cohorts/join', {
          code: m.store.getCohort(names[0] as string)?.code,
          name: 'Ann',
        });
        const first = (await ann.ok('POST', `/api/labs/${LAB}/session`)) as { session: string };
        assert.ok(seatSessions().includes(first.session), "Ann took her class's seat");
        // Her class has its one seat's worth; the other class's seat is left.
        await waitFor('one seat wanted and ready', (h) => {
          const w = h.warm[LAB];
          return w?.wanted === 1 && w.ready === 1;
        });
        const before = seatSessions();
        const r = (await ann.ok('POST', `/api/labs/${LAB}/reset`)) as {
          session: { session: string };
        };
        assert.ok(!before.includes(r.session.session), "a reset took the other class's seat");
        await ann.call('DELETE', `/api/labs/${LAB}/session`);
        // Stopped with its sessions ended (UNDERLAY_END_ON_STOP): the
        // untaken seat's disk goes too, not left as files nobody owns.
        await s.stop();
        srv = undefined;
        assert.deepEqual(
          m.store.listDisksOf(WARM_OWNER).filter((d) => d.name.startsWith(`${LAB}#`)),
          [],
        );
      } finally {
        await srv?.stop();
        for (const name of names) {
          const c = m.store.getCohort(name);
          if (!c) continue;
          m.store.updateCohort({ ...c, closed: true });
          for (const mem of m.store.members(name))
            if (m.store.getDisk(mem.student, LAB)) m.dropDisk(mem.student, LAB);
        }
        fs.rmSync(labs, { recursive: true, force: true });
      }
    },
    { timeout: LONG },
  );
});

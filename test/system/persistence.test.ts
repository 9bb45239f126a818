/**
 * A student's files outlive their sandbox (docs/sandbox.md#kept-disks): the
 * lab session's disk is kept when the session is parked (idle), when the
 * sandbox is removed while the server is down, and across a host reboot
 * (simulated: its processes, mounts, loop device and cgroups gone, the state
 * dir kept). Each time the next start rebuilds the sandbox on the same files
 * without running the lab's setup again, and says that programs are new. A
 * reset starts from the lab's own files again. Collection drops parked disks
 * past their age or budget, never one in use.
 *
 * A "server" here is what `underlay serve` builds on the shared store:
 * SessionManager + LabSessions (server/cli/serve.ts); a new one over the same
 * store is a restarted server.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as path from 'node:path';
import { after, describe } from 'node:test';
import { LabCatalog } from '../../server/labs/catalog';
import { LabEngine } from '../../server/labs/engine';
import { LabSessions } from '../../server/labs/lab-sessions';
import { loadConfig, timeScale } from '../../server/config';
import { detectCgroupMode, SandboxManager, type Sandbox } from '../../server/sandbox/index';
import { SessionManager } from '../../server/sessions/session-manager';
import { createLogger } from '../../server/util/logger';
import {
  cli,
  diskLeftovers,
  mountsContaining,
  pidsOwnedByRange,
  REPO,
  sleep,
  testEnv,
  testManager,
} from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const FIX = path.join(REPO, 'test', 'fixtures', 'labs', 'persist');
const LAB = 'keep-files';
const log = createLogger('warn');

/** A server's session layer over the shared store (as serve.ts wires it). */
function server(parkMs = 3_600_000) {
  const m = testManager();
  const sessions = new SessionManager(m, log, {
    parkMs,
    onEnded: (s) => {
      if (s.lab) m.store.deleteLabSession(s.id);
    },
  });
  const catalog = new LabCatalog(FIX, detectCgroupMode(), log);
  const labs = new LabSessions(sessions, m, m.store, catalog, log);
  const engine = new LabEngine(m.store, catalog.labs, detectCgroupMode());
  return { m, sessions, labs, engine };
}

let n = 0;
const owners: string[] = [];
function newOwner(): string {
  const o = `persist-${process.pid}-${n++}`;
  owners.push(o);
  return o;
}

/** The student's work: a file in /root (the overlay's upper), /tmp, /lab, and the setup's file changed. */
const WORK =
  'echo mine > /root/work.txt && mkdir -p /tmp/t && echo t > /tmp/t/f && echo changed > /lab/setup.txt && ' +
  '{ sleep 1000 >/dev/null 2>&1 & } && echo started';
const READ =
  'cat /root/work.txt /tmp/t/f /lab/setup.txt; pgrep -x sleep >/dev/null && echo sleep-running || echo no-sleep';

/** A new student starts the lab and does the work; returns them and their sandbox. */
async function studentWorked(
  srv: ReturnType<typeof server>,
): Promise<{ owner: string; sb: Sandbox }> {
  const owner = newOwner();
  const first = await srv.labs.start(owner, LAB);
  const sb = sandboxOf(srv, first.session);
  assert.equal((await sb.exec(['bash', '-c', WORK])).code, 0);
  return { owner, sb };
}

/** The student's next start rebuilds the sandbox on their files, and says programs are new. */
async function filesComeBack(srv: ReturnType<typeof server>, owner: string): Promise<void> {
  const again = await srv.labs.start(owner, LAB);
  assert.match(again.notice ?? '', /your files are as you left them/);
  const r = await sandboxOf(srv, again.session).exec(['bash', '-c', READ]);
  assert.equal(r.stdout, 'mine\nt\nchanged\nno-sleep\n', r.stderr);
  await srv.sessions.endAll();
}

function sandboxOf(srv: ReturnType<typeof server>, session: string): Sandbox {
  const s = srv.sessions.get(session);
  assert.ok(s, `session ${session} is live`);
  return s.sandbox;
}

describe('kept disks: files outlive the sandbox', () => {
  after(async () => {
    const m = testManager();
    for (const o of owners) {
      for (const d of m.disks().filter((x) => x.owner === o)) {
        if (d.sandbox) await m.destroy(d.sandbox).catch(() => {});
        m.dropDisk(d.owner, d.name);
      }
    }
  });

  sysTest(
    'park -> resume: files and progress are kept, the setup does not run again, programs are new',
    SYSTEM_NEEDS,
    async () => {
      // Parked after 2 s without a client (longer on a slow host: UNDERLAY_TIME_SCALE).
      const srv = server(2000 * timeScale());
      const owner = newOwner();
      const first = await srv.labs.start(owner, LAB);
      // A tab is open while the student works (no parking meanwhile), then closed.
      const session = srv.sessions.get(first.session);
      assert.ok(session);
      srv.sessions.connected(session);
      const sb = sandboxOf(srv, first.session);
      const w = await sb.exec(['bash', '-c', WORK]);
      assert.equal(w.code, 0, w.stderr);
      const c = await srv.engine.check(owner, sb, LAB, 'write', '1');
      assert.equal(c.passed, true, c.message);
      srv.sessions.disconnected(session);
      // Nobody attached: parked (the sandbox ends, the disk stays).
      const parked = () =>
        !srv.sessions.get(first.session) &&
        srv.m.disks().some((d) => d.owner === owner && !d.sandbox);
      for (let i = 0; i < 1200 && !parked(); i++) await sleep(50);
      assert.equal(srv.sessions.get(first.session), undefined, 'the idle session was not parked');
      const disk = srv.m.disks().find((d) => d.owner === owner);
      assert.ok(disk, 'the disk is kept');
      assert.equal(disk.sandbox, undefined, 'parked: no sandbox holds the disk');
      assert.deepEqual(pidsOwnedByRange(sb.record.uidBase), [], 'parked: no process left');
      assert.deepEqual(mountsContaining(sb.id), [], 'parked: no mount left');
      const list = await cli(['sandbox', 'disks']);
      assert.match(list.stdout, new RegExp(`${disk.id}  parked  ${owner}  ${LAB}`));

      const t0 = Date.now();
      const again = await srv.labs.start(owner, LAB);
      const resumeMs = Date.now() - t0;
      process.stdout.write(`# resume of a parked session: ${resumeMs} ms\n`);
      assert.notEqual(again.session, first.session);
      assert.match(again.notice ?? '', /your files are as you left them/);
      const r = await sandboxOf(srv, again.session).exec(['bash', '-c', READ]);
      assert.equal(r.stdout, 'mine\nt\nchanged\nno-sleep\n', r.stderr);
      assert.equal(srv.engine.state(owner, LAB).steps.write?.passed, true, 'progress kept');
      await srv.sessions.endAll();
    },
  );

  sysTest(
    'the server is killed and the sandbox removed meanwhile: the next start brings the files back',
    SYSTEM_NEEDS,
    async () => {
      const before = server();
      const { owner, sb } = await studentWorked(before);
      // The server dies (its sessions are never ended), then an operator removes the sandbox.
      before.sessions.detachAll();
      const rm = await cli(['sandbox', 'rm', sb.id]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.deepEqual(diskLeftovers(sb.record.resources.disk), [sb.record.resources.disk]);

      const restarted = server();
      const { adopted } = await restarted.m.adoptOrReap();
      await restarted.labs.restore(adopted);
      await filesComeBack(restarted, owner);
    },
  );

  sysTest(
    'a host reboot (processes, mounts, loop device, cgroups gone; state dir kept): the files come back',
    SYSTEM_NEEDS,
    async () => {
      const before = server();
      const { owner, sb } = await studentWorked(before);
      before.sessions.detachAll();
      // What a reboot leaves: nothing in memory. Kill the sandbox's processes
      // (ours: we made it), unmount its host mounts (the loop device goes
      // with the disk's), remove its cgroups; the store still lists it.
      const rec = sb.record;
      process.kill(rec.initPid as number, 'SIGKILL');
      for (let i = 0; i < 200 && pidsOwnedByRange(rec.uidBase).length > 0; i++) {
        await testManager().collectZombies();
        await sleep(25);
      }
      for (const mnt of [...rec.resources.mounts].reverse()) {
        try {
          execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
        } catch {
          // not mounted
        }
      }
      assert.deepEqual(mountsContaining(rec.id), [], 'the "reboot" left mounts');
      for (let i = 0; i < 100 && diskLeftovers(rec.resources.disk).length > 1; i++) await sleep(20);
      assert.deepEqual(
        diskLeftovers(rec.resources.disk),
        [rec.resources.disk],
        'only the image file survives the "reboot"',
      );
      assert.ok(testManager().store.get(rec.id), 'the store still names the dead sandbox');

      const booted = server();
      const { adopted, reaped } = await booted.m.adoptOrReap();
      assert.ok(!adopted.includes(rec.id) && reaped.includes(rec.id), 'the dead sandbox is reaped');
      await booted.labs.restore(adopted);
      await filesComeBack(booted, owner);
    },
  );

  sysTest(
    "a reset starts from the lab's own files; collection drops parked disks past their budget, never one in use",
    SYSTEM_NEEDS,
    async () => {
      const srv = server();
      const owner = newOwner();
      const first = await srv.labs.start(owner, LAB);
      assert.equal((await sandboxOf(srv, first.session).exec(['bash', '-c', WORK])).code, 0);
      const reset = await srv.labs.reset(owner, LAB, 'local', () => {});
      const r = await sandboxOf(srv, reset.session).exec(['bash', '-c', READ]);
      assert.match(r.stdout, /^from-setup$/m, 'the setup ran again on a fresh disk');
      assert.doesNotMatch(r.stdout, /^mine$/m);

      // In use: never dropped, whatever the budget.
      const all = await srv.m.collectDisks({ maxIdleMs: 0, perOwnerBytes: 0, totalBytes: 0 });
      const mine = srv.m.disks().find((d) => d.owner === owner);
      assert.ok(mine?.sandbox, 'the disk in use is kept');
      assert.ok(!all.includes(mine.id));
      // Parked and over the per-student budget: dropped, the id range free again.
      await srv.sessions.endAll();
      assert.equal(srv.m.disks().find((d) => d.owner === owner)?.sandbox, undefined);
      const dropped = await srv.m.collectDisks({
        maxIdleMs: 3_600_000,
        perOwnerBytes: 0,
        totalBytes: Number.MAX_SAFE_INTEGER,
      });
      assert.ok(dropped.includes(mine.id), `dropped: ${dropped.join(', ')}`);
      assert.equal(
        srv.m.disks().find((d) => d.owner === owner),
        undefined,
      );
      assert.deepEqual(
        diskLeftovers(path.join(testManager().config.stateDir, 'disks', `${mine.id}.ext4`)),
        [],
      );
      const fresh = await srv.labs.start(owner, LAB);
      assert.doesNotMatch(fresh.notice ?? '', /as you left them/);
      const f = await sandboxOf(srv, fresh.session).exec(['bash', '-c', READ]);
      assert.match(f.stdout, /^from-setup$/m, 'a new disk: the setup ran');
      await srv.sessions.endAll();
    },
  );

  sysTest(
    'a kept disk a host process still holds is not released (the sandbox stays quarantined) nor mounted twice',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const owner = newOwner();
      const keepDisk = { owner, name: LAB };
      const sb = await m.create({ keepDisk });
      m.markDiskReady(sb);
      assert.equal((await sb.exec(['sh', '-c', 'echo kept > /lab/f'])).code, 0);
      // A host process (ours) with its cwd on the disk: an operator's shell, a backup agent.
      const lab = path.join(sb.record.resources.sessionDir, 'scratch', 'lab');
      const holder = spawn('sleep', ['600'], { cwd: lab, stdio: 'ignore' });
      try {
        assert.equal(await m.teardownOrQuarantine(sb), false, 'teardown reported done');
        const rec = m.store.get(sb.id);
        assert.equal(rec?.state, 'destroying');
        assert.match(rec?.lastError ?? '', /still in use on the host/);
        assert.equal(m.disks().find((d) => d.owner === owner)?.sandbox, sb.id, 'range released');
        await assert.rejects(m.create({ keepDisk }), /in use by another sandbox/);
      } finally {
        holder.kill('SIGKILL');
        await new Promise((r) => holder.once('exit', r));
      }
      // Released: the retry completes, and the files come back once, intact.
      assert.deepEqual(await m.retryQuarantined(), []);
      const again = await m.create({ keepDisk });
      try {
        assert.equal(again.record.resources.restored, true);
        assert.equal((await again.exec(['cat', '/lab/f'])).stdout, 'kept\n');
      } finally {
        await m.teardown(again);
      }
    },
  );

  sysTest(
    "a kept disk's mount points made into links or files by the student do not break (nor steer) the next sandbox",
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const owner = newOwner();
      const keepDisk = { owner, name: LAB };
      const sb = await m.create({ keepDisk });
      m.markDiskReady(sb);
      const r = await sb.exec([
        'sh',
        '-c',
        'echo mine > /tmp/f && unshare -m sh -c "umount -l /tmp /lab /run && rm -rf /tmp /lab /run && ' +
          'ln -s /nonexistent/host/path /tmp && echo file > /lab && mkdir /proc-gone" && echo done',
      ]);
      assert.equal(r.code, 0, r.stderr);
      await m.teardown(sb);
      const again = await m.create({ keepDisk });
      try {
        assert.equal(again.record.resources.restored, true);
        const t = await again.exec(['sh', '-c', 'cat /tmp/f; stat -c %F /tmp /lab /run']);
        assert.equal(t.stdout, 'mine\ndirectory\ndirectory\ndirectory\n', t.stderr);
      } finally {
        await m.teardown(again);
      }
    },
  );

  sysTest(
    'a host whose state dir is nearly full starts no sandbox, with a message that says why',
    SYSTEM_NEEDS,
    async () => {
      const m = new SandboxManager({
        config: loadConfig(testEnv({ UNDERLAY_DISK_RESERVE: '1000T' })),
        store: testManager().store,
        logger: log,
      });
      await assert.rejects(m.create({}), (err: Error & { kind?: string }) => {
        assert.equal(err.kind, 'unavailable');
        assert.match(err.message, /the lab host has no disk space for another sandbox/);
        return true;
      });
    },
  );
});

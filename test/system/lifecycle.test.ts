/**
 * Lifecycle: many create/teardown cycles leave nothing; a CLI or server
 * killed with SIGKILL mid-session leaves state that `reap` or the next
 * server start cleans up or re-adopts.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe } from 'node:test';
import { timeScale } from '../../server/config';
import type { CgroupDriver } from '../../server/sandbox/cgroups';
import type { SandboxError } from '../../server/sandbox/errors';
import {
  SandboxManager,
  initAlive,
  processStartTime,
  type Sandbox,
} from '../../server/sandbox/index';
import type { SandboxRecord } from '../../server/store/store';
import { dirtyBoundSupported, loopDevicesOf } from '../../server/sandbox/disk';
import { liftDiskIo } from '../../server/sandbox/disk-io';
import { ownSpawns } from '../../server/sandbox/handle';
import { earlyHelpers, type ManagerOptions } from '../../server/sandbox/manager';
import { PipedProcess } from '../../server/sandbox/piped';
import { buildOps } from '../../server/sandbox/steps';
import { createLogger } from '../../server/util/logger';
import { pollUntil } from '../../server/util/wait';
import { encodeOps, type Native, type Op } from '../../native/index';
import {
  CLI,
  REPO,
  cli,
  diskIoRules,
  diskLeftovers,
  dirtyBound,
  mountsContaining,
  pidsOwnedByRange,
  sleep,
  testEnv,
  testManager,
} from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

async function assertGone(r: SandboxRecord): Promise<void> {
  // We (the test process) are a subreaper: the init and relays of a sandbox
  // whose creator we killed become our children, and only a parent can reap.
  // A dying namespace init waits for its namespace to drain, so reap in rounds.
  for (let i = 0; i < 100 && pidsOwnedByRange(r.uidBase).length > 0; i++) {
    await testManager().reaper.collectZombies();
    await sleep(20);
  }
  assert.deepEqual(pidsOwnedByRange(r.uidBase), [], `processes of ${r.id} survived`);
  assert.deepEqual(mountsContaining(r.id), [], `mounts of ${r.id} survived`);
  for (const d of r.resources.cgroupDirs) assert.ok(!fs.existsSync(d), `cgroup ${d} survived`);
  assert.ok(!fs.existsSync(r.resources.sessionDir), `files of ${r.id} survived`);
  // The image goes right after teardown returns (reaper.ts: off its path).
  for (let i = 0; i < 100 && diskLeftovers(r.resources.disk).length > 0; i++) await sleep(20);
  assert.deepEqual(diskLeftovers(r.resources.disk), [], `the disk of ${r.id} survived`);
}

/** Session cgroup dir names under our `underlay/` (other runs on this host may add their own). */
function cgroupChildren(): string[] {
  const names: string[] = [];
  for (const ctrl of ['cpu', 'memory', 'pids', 'freezer']) {
    const own =
      (
        fs
          .readFileSync('/proc/self/cgroup', 'utf8')
          .split('\n')
          .find((l) => l.split(':')[1] === ctrl) ?? ''
      ).split(':')[2] ?? '/';
    const base = path.join('/sys/fs/cgroup', ctrl, own, 'underlay');
    if (fs.existsSync(base))
      for (const e of fs.readdirSync(base, { withFileTypes: true }))
        if (e.isDirectory()) names.push(e.name);
  }
  return names;
}

/** A manager of its own on the test manager's host, store and state dir. */
function sharedManager(opts: Partial<ManagerOptions>): SandboxManager {
  const base = testManager();
  return new SandboxManager({
    config: base.config,
    store: base.store,
    logger: createLogger('warn'),
    ...opts,
  });
}

/** A helper given `ops` fails at step `clone` with `code`, and nothing ran as the range `base`. */
async function refusedBeforeFork(
  native: Native,
  ops: Op[],
  base: number,
  code: string,
  message: RegExp,
): Promise<void> {
  await assert.rejects(
    native.addon.createSandbox(native.helperPath, encodeOps(ops)),
    (err: SandboxError) => {
      assert.equal(err.step, 'clone', String(err));
      assert.equal(err.code, code, String(err));
      assert.match(err.message, message);
      return true;
    },
  );
  assert.deepEqual(pidsOwnedByRange(base), []);
}

async function waitFor<T>(what: string, fn: () => T | undefined, ms = 15000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/**
 * 200 on the host; fewer where a cycle is slow (UNDERLAY_TIME_SCALE, the VM
 * tier's emulated guest: 25 there), still enough for a leak per cycle to show.
 */
const CYCLES = Math.max(25, Math.round(200 / timeScale() ** 2));

describe('lifecycle', () => {
  sysTest(
    'a command run in a sandbox (a check, a panel) is started off the event loop and reaped by its owner: its helper is no child of the main thread, its exit is reported, nothing is left',
    SYSTEM_NEEDS,
    async (t) => {
      const m = testManager();
      const sb = await m.create();
      t.after(() => m.teardown(sb.record));
      // Children are listed per thread that made them: libuv's spawn forks on
      // the main thread, which held the event loop for the fork and the exec.
      const childrenOf = (tid: number) =>
        fs
          .readFileSync(`/proc/self/task/${tid}/children`, 'utf8')
          .trim()
          .split(/\s+/)
          .filter(Boolean)
          .map(Number);
      // Pipes and pidfds this process holds: none may be left once the children are done.
      const handles = () =>
        fs
          .readdirSync('/proc/self/fd')
          .map((fd) => {
            try {
              return fs.readlinkSync(`/proc/self/fd/${fd}`);
            } catch {
              return ''; // the dir's own fd, gone
            }
          })
          .filter((l) => l.startsWith('pipe:') || l === 'anon_inode:[pidfd]')
          .sort();
      const handlesBefore = handles();
      const child = sb.spawnPipes(['sleep', '300']);
      child.stdout.resume();
      child.stderr.resume();
      assert.ok(await pollUntil(() => child.pid !== undefined, 10_000), 'no pid');
      const pid = child.pid as number;
      assert.ok(!childrenOf(process.pid).includes(pid), 'the helper was forked by the main thread');
      const threads = fs.readdirSync('/proc/self/task').map(Number);
      assert.ok(
        threads.some((tid) => childrenOf(tid).includes(pid)),
        'the helper is not our child at all',
      );
      const exited = new Promise<[number | null, string | null]>((r) =>
        child.on('exit', (code: number | null, signal: string | null) => r([code, signal])),
      );
      const closed = new Promise<void>((r) => child.on('close', () => r()));
      child.kill('SIGTERM');
      // The helper relays the signal and exits as its command did (128 + 15),
      // or, signalled before it set that up, dies of it itself.
      const [code, signal] = await exited;
      assert.ok(code === 143 || signal === 'SIGTERM', `exit ${code} signal ${signal}`);
      await closed;
      assert.ok(!fs.existsSync(`/proc/${pid}`), 'the helper was not reaped');
      // Output and the exit status come through, stdin too; a background job
      // that keeps the pipe does not hold the call.
      const r = await sb.exec(['sh', '-c', 'read x; echo "$x"; echo err >&2; sleep 300 & exit 3'], {
        input: 'hello\n',
      });
      assert.deepEqual([r.code, r.stdout, r.stderr], [3, 'hello\n', 'err\n']);
      // Input far beyond a pipe's buffer arrives whole (a lab's files, a tool).
      const blob = crypto.randomBytes(4 << 20);
      const sum = await sb.exec(['sha256sum'], { input: blob });
      assert.equal(
        sum.stdout.split(' ')[0],
        crypto.createHash('sha256').update(blob).digest('hex'),
      );
      // Killed before its pid is known: the signal waits for it.
      const early = sb.spawnPipes(['sleep', '300']);
      early.stdout.resume();
      early.stderr.resume();
      assert.equal(early.pid, undefined);
      early.kill('SIGKILL');
      const [earlyCode, earlySignal] = await new Promise<[unknown, unknown]>((r) =>
        early.on('close', (code: unknown, signal: unknown) => r([code, signal])),
      );
      assert.ok(earlySignal === 'SIGKILL' || earlyCode === 137, `${earlyCode} ${earlySignal}`);
      // A helper that cannot start: 'error', then 'close' (a caller cleans up there).
      const broken = new PipedProcess(
        m.native.addon,
        '/nonexistent/underlay-nsexec',
        [],
        ownSpawns,
      );
      const events: string[] = [];
      broken.on('error', () => events.push('error'));
      await new Promise<void>((r) =>
        broken.on('close', () => {
          events.push('close');
          r();
        }),
      );
      assert.deepEqual(events, ['error', 'close']);
      assert.equal(ownSpawns.pending, false, 'a failed spawn still counts as under way');
      assert.ok(
        await pollUntil(() => handles().join() === handlesBefore.join(), 10_000),
        `left open: ${handles().filter((h) => !handlesBefore.includes(h))}`,
      );
    },
  );

  sysTest(
    `${CYCLES} create/teardown cycles leave nothing behind`,
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const storeBefore = m.store.list().length;
      const cgBefore = cgroupChildren();
      const records: SandboxRecord[] = [];
      for (let i = 0; i < CYCLES; i++) {
        const sb = await m.create({ hostname: `cycle-${i}` });
        if (i % 20 === 0) {
          const r = await sb.exec(['hostname']);
          assert.equal(r.stdout, `cycle-${i}\n`);
        }
        records.push({ ...sb.record });
        await m.teardown(sb.record);
      }
      for (const r of records) await assertGone(r);
      // Only this test's sessions count: a red team or a second checkout on
      // the same host makes its own sessions under the same parent.
      const ours = new Set(records.map((r) => r.id));
      const left = cgroupChildren().filter((n) => ours.has(n) && !cgBefore.includes(n));
      assert.deepEqual(left, [], 'session cgroups accumulated');
      const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
      assert.deepEqual(
        records.filter((r) => mi.includes(r.resources.sessionDir)).map((r) => r.id),
        [],
        'mounts accumulated',
      );
      assert.equal(m.store.list().length, storeBefore, 'id ranges were not released');
    },
    // A failure bound, not a speed goal: under emulation (the VM tier) a cycle takes ~1 s.
    { timeout: 600_000 },
  );

  sysTest(
    'a create whose cgroups fail while its disk is being mounted leaves nothing behind',
    SYSTEM_NEEDS,
    async () => {
      const shared = testManager();
      // The same host, store and state dir; a driver whose create fails as a
      // full cgroup id space would (hardening.test.ts makes that for real).
      const driver: CgroupDriver = Object.create(shared.driver);
      let failed: SandboxRecord | undefined;
      driver.create = (id) => {
        failed = structuredClone(shared.store.list().find((r) => r.id === id));
        throw Object.assign(new Error(`mkdir ${id}: No space left on device`), { code: 'ENOSPC' });
      };
      // v1: the helper makes them (CgroupDriver.ahead); its last cgroup op
      // fails, after it made every dir, as a refused write would.
      driver.ahead = (id, limits, owner) => {
        const layout = shared.driver.ahead(id, limits, owner);
        if (!layout) return undefined;
        failed = structuredClone(shared.store.list().find((r) => r.id === id));
        const bad: Op = {
          step: 'cgroup',
          op: 'write',
          path: path.join(layout.dirs[0]!, 'cgroup.procs'),
          content: 'not-a-pid',
        };
        return { ...layout, makeOps: [...(layout.makeOps ?? []), bad] };
      };
      const m = new SandboxManager({
        config: shared.config,
        store: shared.store,
        driver,
        logger: createLogger('error'),
      });
      const storeBefore = m.store.list().length;
      await assert.rejects(m.create(), (err: SandboxError) => {
        assert.equal(err.step, 'cgroup', String(err));
        assert.match(err.message, /No space left on device|EINVAL/);
        return true;
      });
      assert.ok(failed, 'the injected cgroup failure was not reached');
      // The disk was being made for this create when its cgroups failed.
      assert.ok(failed.resources.disk?.endsWith('.ext4'));
      await assertGone(failed);
      assert.equal(m.store.list().length, storeBefore, 'the id range was not released');
    },
  );

  sysTest(
    'the helper starts while the disk mounts; a disk that fails then leaves nothing behind',
    SYSTEM_NEEDS,
    async () => {
      const shared = testManager();
      // The same host, store and state dir; a mount of the session disk that
      // waits until the helper's child exists (it has forked, become the
      // session's uid and waits at await-scratch), then fails as a full
      // host disk would.
      let failed: SandboxRecord | undefined;
      let childSeen = false;
      const addon = Object.create(shared.native.addon) as typeof shared.native.addon;
      addon.mountLoop = async (image: string) => {
        failed = structuredClone(
          shared.store.list().find((r) => r.resources.disk === image),
        ) as SandboxRecord;
        const end = Date.now() + 15_000;
        while (Date.now() < end && pidsOwnedByRange(failed.uidBase).length === 0) await sleep(5);
        childSeen = pidsOwnedByRange(failed.uidBase).length > 0;
        throw Object.assign(new Error(`mount ${image}: No space left on device`), {
          code: 'ENOSPC',
          step: 'scratch',
        });
      };
      const m = new SandboxManager({
        config: shared.config,
        store: shared.store,
        native: { ...shared.native, addon },
        logger: createLogger('error'),
      });
      const storeBefore = m.store.list().length;
      const slotsBefore = earlyHelpers.free;
      await assert.rejects(m.create(), (err: SandboxError) => {
        assert.equal(err.step, 'scratch', String(err));
        assert.match(err.message, /No space left on device/);
        return true;
      });
      assert.ok(failed, 'the injected mount failure was not reached');
      assert.ok(childSeen, 'the helper had not started while the disk was being mounted');
      assert.equal(earlyHelpers.free, slotsBefore, 'the early-start slot was not given back');
      // Its child, the idmapped image at lower/ and the cgroups go too.
      await assertGone(failed);
      assert.equal(m.store.list().length, storeBefore, 'the id range was not released');
    },
  );

  sysTest(
    'more creates at once than libuv has pool threads all start (helpers waiting for disks never starve the mounts)',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const n = 12;
      const slots = earlyHelpers.free;
      assert.ok(slots > 0, 'no create may start its helper early here');
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${n} concurrent creates had not finished after 120 s`)),
          120_000 * timeScale(),
        );
      });
      const creates = Array.from({ length: n }, (_, i) => m.create({ hostname: `herd-${i}` }));
      let made: PromiseSettledResult<Sandbox>[];
      try {
        made = await Promise.race([Promise.allSettled(creates), hung]);
      } catch (err) {
        // Hung creates may never finish: tear down whatever still does.
        for (const c of creates) void c.then((sb) => m.teardown(sb.record)).catch(() => {});
        throw err;
      } finally {
        clearTimeout(timer);
      }
      for (const r of made) if (r.status === 'fulfilled') await m.teardown(r.value.record);
      const failed = made.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
      assert.deepEqual(failed, []);
      assert.equal(earlyHelpers.free, slots, 'early-start slots leaked');
    },
    { timeout: 600_000 },
  );

  sysTest(
    'a helper told to wait for the session disk without a gate to wait on refuses before it forks',
    SYSTEM_NEEDS,
    async () => {
      const { native } = testManager();
      const base = 100000 + 65536 * 4000; // no live range: nothing may run as it
      const ops = buildOps({
        uidBase: base,
        gidBase: base,
        hostname: 'nogate',
        imageRoot: '/nonexistent',
        lowerDir: '/nonexistent/lower',
        idmap: true,
        upperDir: '/nonexistent/upper',
        workDir: '/nonexistent/work',
        mergedDir: '/nonexistent/merged',
        cgroup: {
          mode: 'v1',
          dirs: [],
          attachProcs: [],
          joinProcs: [],
          initOps: () => [],
          afterStart: () => {},
        },
        tmpDir: '/nonexistent/tmp',
        labDir: '/nonexistent/lab',
        shmBytes: 1 << 20,
        runBytes: 1 << 20,
        shmInodes: 100,
        runInodes: 100,
      });
      await refusedBeforeFork(native, ops, base, 'EBADF', /scratch gate/);
    },
  );

  sysTest(
    'an op list whose early-started child has nothing to wait on (start-child without await-host) is refused before it forks',
    SYSTEM_NEEDS,
    async () => {
      const { native } = testManager();
      const base = 100000 + 65536 * 4001; // no live range: nothing may run as it
      const ops: Op[] = [
        { step: 'clone', op: 'clone-userns', uid: base, gid: base },
        { step: 'clone', op: 'start-child' },
        { step: 'clone', op: 'release-child' },
        { step: 'clone', op: 'fork-init' },
        { step: 'init', op: 'init-loop' },
      ];
      await refusedBeforeFork(native, ops, base, 'EINVAL', /start-child without an await-host/);
    },
  );

  sysTest(
    "a child started early that fails while the host still waits for the disk: the create reports the child's error (not a helper killed by SIGPIPE)",
    SYSTEM_NEEDS,
    async () => {
      const { native } = testManager();
      const base = 100000 + 65536 * 4002; // no live range: nothing else runs as it
      const map = `0 ${base} 65536`;
      const ops: Op[] = [
        { step: 'clone', op: 'clone-userns', uid: base, gid: base },
        { step: 'clone', op: 'write-child-proc', file: 'uid_map', content: map },
        { step: 'clone', op: 'write-child-proc', file: 'gid_map', content: map },
        { step: 'clone', op: 'start-child' },
        { step: 'scratch', op: 'await-scratch' },
        { step: 'clone', op: 'release-child' },
        { step: 'clone', op: 'setids', uid: 0, gid: 0 },
        // Not a number: the kernel refuses it (EINVAL), in the child's early ops.
        { step: 'clone', op: 'write', path: '/proc/sys/user/max_user_namespaces', content: 'many' },
        { step: 'clone', op: 'await-host' },
        { step: 'clone', op: 'fork-init' },
        { step: 'init', op: 'init-loop' },
      ];
      const started = native.addon.startSandbox(native.helperPath, encodeOps(ops));
      try {
        // The child has failed and exited (a zombie: the host, at the gate,
        // has not reaped it) before the host is let on to release it.
        await waitFor('the early child to fail', () => {
          const zombies = fs
            .readdirSync('/proc')
            .filter((p) => /^\d+$/.test(p))
            .filter((p) => {
              try {
                const st = fs.readFileSync(`/proc/${p}/status`, 'utf8');
                return /^State:\s+Z/m.test(st) && new RegExp(`^Uid:\\s+${base}\\s`, 'm').test(st);
              } catch {
                return false;
              }
            });
          return zombies.length > 0 ? zombies : undefined;
        });
        fs.writeSync(started.gate, 'g');
      } finally {
        fs.closeSync(started.gate);
      }
      await assert.rejects(started.done, (err: SandboxError) => {
        assert.equal(err.code, 'EINVAL', String(err));
        assert.equal(err.path, '/proc/sys/user/max_user_namespaces', String(err));
        return true;
      });
      await waitFor('nothing of the range left', () =>
        pidsOwnedByRange(base).length === 0 ? true : undefined,
      );
    },
  );

  sysTest(
    'a server keeps a helper waiting ahead: a create uses it (it ends, a new one waits), one that died is replaced by a fresh start, and dropAhead ends it',
    SYSTEM_NEEDS,
    async () => {
      const slots = earlyHelpers.free;
      // Our children that are helpers (the warm one waits for its op list).
      const helpers = () =>
        fs
          .readdirSync('/proc')
          .filter((p) => /^\d+$/.test(p))
          .map(Number)
          .filter((pid) => {
            try {
              const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
              const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
              return stat.includes('(underlay-nsexec)') && Number(fields[1]) === process.pid;
            } catch {
              return false;
            }
          });
      // v2: where the process lives (its delegation settles before the
      // helper is born beside it, or it would move to a new systemd scope).
      const unified = () => /^0::(.*)$/m.exec(fs.readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
      const cgBefore = unified();
      const m = sharedManager({ warmHelper: true });
      try {
        const first = await waitFor('a helper waiting ahead', () =>
          m.warmHelperWaiting && helpers().length === 1 ? helpers()[0] : undefined,
        );
        assert.equal(earlyHelpers.free, slots - 1, 'the waiting helper holds an early-start slot');
        assert.ok(unified()?.startsWith(cgBefore ?? ''), `moved from ${cgBefore} to ${unified()}`);
        const sb = await m.create({ hostname: 'warm' });
        try {
          assert.equal((await sb.exec(['hostname'])).stdout.trim(), 'warm');
        } finally {
          await m.teardown(sb.record);
        }
        assert.ok(
          unified()?.startsWith(cgBefore ?? ''),
          `the create moved us from ${cgBefore} to ${unified()}`,
        );
        // It ran this create and exited; the next one waits.
        const second = await waitFor('the next helper waiting ahead', () => {
          const h = helpers();
          return m.warmHelperWaiting && h.length === 1 && h[0] !== first ? h[0] : undefined;
        });
        assert.ok(!fs.existsSync(`/proc/${first}`), 'the used helper is still there');

        // One that died before its create noticed: the spec write fails
        // (EPIPE) and the create starts a helper of its own.
        process.kill(second, 'SIGKILL');
        // Synchronously (no event-loop turn: the manager has not seen it end):
        // until the pool thread that waits for it has reaped it.
        const end = Date.now() + 10_000 * timeScale();
        while (fs.existsSync(`/proc/${second}`) && Date.now() < end) {
          // spin: the point is not to yield
        }
        assert.ok(!fs.existsSync(`/proc/${second}`), 'the killed helper was not reaped');
        const sb2 = await m.create({ hostname: 'warm-2' });
        try {
          assert.equal((await sb2.exec(['hostname'])).stdout.trim(), 'warm-2');
        } finally {
          await m.teardown(sb2.record);
        }
        const third = await waitFor('a helper waiting ahead again', () =>
          m.warmHelperWaiting && helpers().length === 1 ? helpers()[0] : undefined,
        );
        await m.dropAhead();
        await waitFor('the dropped helper to end', () =>
          fs.existsSync(`/proc/${third}`) ? undefined : true,
        );
        assert.equal(m.warmHelperWaiting, false);
        assert.equal(earlyHelpers.free, slots, 'early-start slots leaked');
      } finally {
        await m.dropAhead();
      }
    },
  );

  sysTest(
    "a server keeps a session disk ready ahead: mounted (detached), a create of its size moves it into place (its loop device), a mount namespace made meanwhile keeps no copy, the next is made, dropAhead drops it, a dead server's leftover goes, a live one survives the sweep of orphan images",
    SYSTEM_NEEDS,
    async () => {
      const base = testManager();
      const disks = path.join(base.config.stateDir, 'disks');
      fs.mkdirSync(disks, { recursive: true });
      // What a killed server leaves: the image (its mount and loop device went with its fds).
      const leftover = path.join(disks, 'spare-left-by-a-dead-server.ext4');
      fs.writeFileSync(leftover, '');
      const spares = () => fs.readdirSync(disks).filter((f) => f.startsWith('spare-'));
      const m = sharedManager({ spareDisk: true });
      let holder: ReturnType<typeof spawn> | undefined;
      try {
        // The first create tells the size; the spare is made after it.
        const first = await m.create({ hostname: 'spare-0' });
        await m.teardown(first.record);
        const file = await waitFor('a spare disk', () =>
          m.spareDiskReady && spares().length === 1 ? path.join(disks, spares()[0]!) : undefined,
        );
        assert.ok(!fs.existsSync(leftover), 'the leftover spare was not removed');
        const [dev] = loopDevicesOf(file);
        assert.ok(dev, `the spare ${file} is on no loop device`);
        // Mounted, but in no mount table: nothing can copy it.
        assert.ok(
          !fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${dev} `),
          'the spare is in the mount table',
        );
        // A host process makes a mount namespace while the spare waits
        // (systemd units with PrivateTmp do): a private copy of an attached
        // mount there would hold the disk and its loop device after teardown.
        holder = spawn('unshare', ['-m', 'sleep', '300'], { stdio: 'ignore' });
        await waitFor('the other mount namespace', () =>
          holder?.pid &&
          fs.readlinkSync(`/proc/${holder.pid}/ns/mnt`) !== fs.readlinkSync('/proc/self/ns/mnt') &&
          fs.readFileSync(`/proc/${holder.pid}/comm`, 'utf8').trim() === 'sleep'
            ? true
            : undefined,
        );
        // The sweep of orphan images (housekeeping, `sandbox reap`) spares it,
        // however old: it is on a live loop device.
        const old = new Date(Date.now() - 10 * 60_000);
        fs.utimesSync(file, old, old);
        m.reaper.sweepDisks();
        assert.ok(fs.existsSync(file), 'the sweep removed a live spare');

        const sb = await m.create({ hostname: 'spare-1' });
        const disk = sb.record.resources.disk as string;
        try {
          assert.ok(!fs.existsSync(file), 'the spare was not taken');
          assert.deepEqual(loopDevicesOf(disk), [dev], 'the session disk is not the spare');
          const r = await sb.exec([
            'sh',
            '-c',
            'echo kept > /tmp/f && cat /tmp/f && stat -c %a /tmp',
          ]);
          assert.deepEqual(r.stdout.trim().split('\n'), ['kept', '1777'], r.stderr);
        } finally {
          await m.teardown(sb.record);
        }
        await waitFor("the taken spare's loop device to detach", () =>
          loopDevicesOf(disk).length === 0 ? true : undefined,
        );
        const next = await waitFor('the next spare disk', () =>
          m.spareDiskReady && spares().length === 1 && path.join(disks, spares()[0]!) !== file
            ? path.join(disks, spares()[0]!)
            : undefined,
        );
        assert.equal(loopDevicesOf(next).length, 1);
        await m.dropAhead();
        assert.equal(m.spareDiskReady, false);
        assert.ok(!fs.existsSync(next), 'dropAhead left the spare file');
        await waitFor('the spare loop device to detach', () =>
          loopDevicesOf(next).length === 0 ? true : undefined,
        );
      } finally {
        holder?.kill('SIGKILL');
        await m.dropAhead();
      }
    },
  );

  sysTest(
    'kill -9 of the CLI mid-session, then `underlay sandbox reap`, leaves nothing behind',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const child = spawn(
        process.execPath,
        [CLI, 'sandbox', 'run', '--', 'sh', '-c', 'setsid sleep 300 & sleep 300'],
        {
          env: testEnv(),
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      const rec = await waitFor('the CLI sandbox', () =>
        m.store
          .list()
          .find(
            (r) =>
              r.ownerPid === child.pid &&
              r.state === 'ready' &&
              pidsOwnedByRange(r.uidBase).length >= 3,
          ),
      );
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok(initAlive(rec), 'the sandbox should outlive its killed CLI until reaped');
      const ls = await cli(['sandbox', 'ls']);
      assert.match(ls.stdout, new RegExp(`${rec.id}.*\\(gone\\)`));
      const reap = await cli(['sandbox', 'reap']);
      assert.equal(reap.code, 0, reap.stderr);
      assert.match(reap.stdout, new RegExp(`reaped \\d+: .*${rec.id}`));
      await assertGone(rec);
      assert.equal(m.store.get(rec.id), undefined);
    },
  );

  sysTest(
    'kill -9 of the server mid-session: the next start re-adopts a live sandbox and reaps a dead one',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const start = () => {
        const p = spawn(
          process.execPath,
          [path.join(REPO, 'test', 'fixtures', 'hold-sandbox.js'), 'server'],
          {
            env: testEnv(),
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        return new Promise<{ pid: number; id: string; kill: () => Promise<void> }>(
          (resolve, reject) => {
            p.stdout.once('data', (b: Buffer) =>
              resolve({
                pid: p.pid as number,
                id: b.toString().trim(),
                kill: async () => {
                  p.kill('SIGKILL');
                  await new Promise((r) => p.once('exit', r));
                },
              }),
            );
            p.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
          },
        );
      };
      const live = await start();
      const dead = await start();
      await live.kill();
      await dead.kill();
      const deadRec = m.store.get(dead.id) as SandboxRecord;
      const liveRec = m.store.get(live.id) as SandboxRecord;
      // The second sandbox's init dies too (as if the host had rebooted it away).
      process.kill(deadRec.initPid as number, 'SIGKILL');
      await waitFor('the dead init', () => (initAlive(deadRec) ? undefined : true));
      // The live one's server died after recording its disk limits and
      // before setting them (docs/sandbox.md#disk-bandwidth).
      const liveIo = liveRec.resources.diskIo;
      const deadIo = deadRec.resources.diskIo;
      assert.ok(liveIo && deadIo, 'the records name their disk limits');
      liftDiskIo(liveRec);
      assert.deepEqual(diskIoRules(liveIo.dev, liveRec.resources.cgroupDirs), []);
      const { adopted, reaped } = await m.adoptOrReap();
      assert.ok(adopted.includes(live.id), `live sandbox not adopted: ${adopted}`);
      assert.ok(reaped.includes(dead.id), `dead sandbox not reaped: ${reaped}`);
      await assertGone(deadRec);
      assert.deepEqual(diskIoRules(deadIo.dev), [], 'the reaped disk left limits on its device');
      assert.deepEqual(dirtyBound(deadIo.dev), { strict: '0', maxRatio: '100' });
      assert.notDeepEqual(
        diskIoRules(liveIo.dev, liveRec.resources.cgroupDirs),
        [],
        'the adopted sandbox has its disk limits again',
      );
      assert.equal(dirtyBound(liveIo.dev).strict, dirtyBoundSupported() ? '1' : '0');
      // The adopted sandbox is fully usable, and now ours.
      const sb = m.get(live.id);
      assert.equal(sb.record.ownerPid, process.pid);
      const r = await sb.exec(['hostname']);
      assert.equal(r.stdout, 'held\n');
      await m.teardown(sb.record);
      await assertGone(liveRec);
      assert.deepEqual(diskIoRules(liveIo.dev), []);
      assert.deepEqual(dirtyBound(liveIo.dev), { strict: '0', maxRatio: '100' });
    },
  );

  sysTest(
    'sandbox rm refuses a sandbox another live process is still creating (its mounts would race the teardown)',
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const sb = await m.create({ hostname: 'half-made' });
      try {
        // As a server's record looks between its reservation and its clone:
        // `creating`, owned by a live process that is not the CLI.
        m.store.update({
          ...sb.record,
          state: 'creating',
          ownerKind: 'server',
          ownerPid: process.pid,
          ownerStart: processStartTime(process.pid) ?? 0,
        });
        const rm = await cli(['sandbox', 'rm', sb.id]);
        assert.equal(rm.code, 125, rm.stdout + rm.stderr);
        assert.match(
          rm.stderr,
          new RegExp(`${sb.id} is still being created by process ${process.pid}`),
        );
        assert.match(rm.stderr, /hint: /);
        assert.equal(m.store.get(sb.id)?.state, 'creating', 'left alone');
        assert.ok(initAlive(sb.record), 'its init still runs');
        // Up (ready) again: rm removes it as before.
        m.store.update({ ...sb.record, state: 'ready' });
        const again = await cli(['sandbox', 'rm', sb.id]);
        assert.equal(again.code, 0, again.stderr);
        await assertGone(sb.record);
      } finally {
        if (m.store.get(sb.id)) await m.teardown(sb.record);
      }
    },
  );
});

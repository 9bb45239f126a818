/**
 * Checks cannot be forged from inside the sandbox (docs/sandbox.md#trusted-checks).
 * The attack from the hardening issue: a fake `bash` (and fake tools) early
 * in PATH and over /usr/bin made every ns-pid check pass without doing the
 * lab. Checks now run with the image's toolset in a private mount view;
 * the control run shows the same fakes do forge an untrusted run, so the
 * test can fail. And a check's processes cannot be ptraced or read through
 * /proc by sandbox root.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { LabEngine } from '../../server/labs/engine';
import { loadLabs } from '../../server/labs/loader';
import { runScript } from '../../server/labs/runtime';
import { SandboxManager, type Sandbox } from '../../server/sandbox/index';
import { Store } from '../../server/store/store';
import { createLogger } from '../../server/util/logger';
import { REPO, testConfig, testEnv, testManager } from '../helpers/env';
import { loadConfig } from '../../server/config';
import { setupGuard, SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** Fakes that answer "yes" to everything, where a student can put them. */
const PLANT = `
set -e
fake='#!/bin/sh
echo "forged: all good"
exit 0'
for t in bash sh awk stat readlink grep sed cat; do
  printf '%s\\n' "$fake" > /usr/local/bin/$t && chmod 755 /usr/local/bin/$t
done
cp /usr/local/bin/bash /usr/bin/bash.fake && mv /usr/bin/bash.fake /usr/bin/bash
echo /nonexistent/evil.so > /etc/ld.so.preload
`;

describe('trusted checks', () => {
  const { fail: setupFailed, ready } = setupGuard();
  let m: SandboxManager;
  let sb: Sandbox;
  const { labs, problems } = loadLabs([path.join(REPO, 'labs', 'ns-pid')]);
  const lab = labs[0];

  before(async () => {
    try {
      assert.deepEqual(problems, []);
      m = testManager();
      sb = await m.create({ hostname: 'forger' });
      const r = await sb.exec(['sh', '-c', PLANT]);
      assert.equal(r.code, 0, r.stderr);
    } catch (err) {
      setupFailed(err);
    }
  });
  after(async () => {
    if (sb) await m.teardown(sb);
  });

  sysTest(
    'fake tools in PATH, over /usr/bin and in ld.so.preload forge no check (and do forge an untrusted run)',
    SYSTEM_NEEDS,
    async () => {
      ready();
      assert.ok(lab);
      const steps = lab.lab.steps.filter((s) => s.check);
      assert.ok(steps.length >= 3, 'ns-pid has checks');
      // Control: the same check scripts run the old way are forged.
      let forged = 0;
      for (const s of steps) {
        const r = await runScript(sb, s.check?.script ?? '', {
          timeoutS: 20,
          env: {},
          trusted: false,
        });
        if (r.code === 0) forged++;
      }
      assert.ok(forged > 0, 'the fakes forge an untrusted check: the attack is real');
      // The engine's checks: none passes, since nothing of the lab was done.
      const engine = new LabEngine(m.store, new Map([[lab.lab.metadata.id, lab]]), m.driver.mode);
      const owner = `forger-${process.pid}`;
      for (const s of steps) {
        const c = await engine.check(owner, sb, lab.lab.metadata.id, s.id, '1');
        assert.equal(c.passed, false, `step ${s.id} passed: ${c.message}`);
        assert.doesNotMatch(c.message, /forged/);
      }
    },
  );

  sysTest(
    "sandbox root cannot read a check's memory or environment through /proc (nor ptrace it)",
    SYSTEM_NEEDS,
    async () => {
      ready();
      // Finds `sleep TAG` (not itself: its own argv holds TAG too) and tries
      // to read its environment, which needs ptrace-read access.
      const probe = (tag: string) =>
        `for p in /proc/[0-9]*; do [ "$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)" = "sleep ${tag} " ] || continue; ` +
        'head -c1 $p/environ >/dev/null 2>&1 && echo readable || echo denied; exit 0; done; echo absent';
      // The student's shell, with the student's own (now restored) bash.
      // (Not `sh`: the fake one in /usr/local/bin would answer.)
      const restored = await sb.exec([
        '/bin/dash',
        '-c',
        'rm -f /etc/ld.so.preload /usr/local/bin/*; cp /bin/dash /usr/bin/bash',
      ]);
      assert.equal(restored.code, 0, restored.stderr);
      const spy = (tag: string) =>
        sb.exec([
          'sh',
          '-c',
          `i=0; while [ $i -lt 200 ]; do ${probe(tag)} | grep -v absent && exit 0; i=$((i+1)); sleep 0.05; done; echo absent`,
        ]);
      // A long-running trusted command, and the same one untrusted as control.
      const trusted = sb.exec(['sleep', '7.123'], { trusted: true, timeoutMs: 20_000 });
      const seenTrusted = await spy('7.123');
      const plain = sb.exec(['sleep', '7.456'], { timeoutMs: 20_000 });
      const seenPlain = await spy('7.456');
      await Promise.all([trusted, plain]);
      assert.match(seenPlain.stdout, /^readable$/m, 'control: an untrusted command is readable');
      assert.match(seenTrusted.stdout, /^denied$/m, `a trusted command: ${seenTrusted.stdout}`);
    },
    { timeout: 60_000 },
  );

  sysTest(
    "a check's 200 KiB verdict line is kept as at most 1000 characters",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const r = await runScript(sb, 'fail "$(head -c 200000 /dev/zero | tr "\\0" y)"', {
        timeoutS: 20,
        env: {},
        trusted: true,
      });
      assert.equal(r.code, 1);
      assert.equal(r.message.length, 1000);
      assert.match(r.message, /^y+…$/);
    },
  );

  sysTest(
    "a check maps its own copy of the shared libraries, never the inode students' processes map",
    SYSTEM_NEEDS,
    async () => {
      ready();
      // Every fork, exec and exit of a process takes the mapping lock of each
      // file it maps; on one shared libc inode, a student's fork bomb made
      // checks wait seconds (docs/sandbox.md#trusted-checks).
      const libc = async (trusted: boolean) => {
        const r = await sb.exec(['/usr/bin/cat', '/proc/self/maps'], {
          trusted,
          timeoutMs: 20_000,
        });
        assert.equal(r.code, 0, r.stderr);
        const line = r.stdout.split('\n').find((l) => /\/libc\.so\.6$/.test(l));
        assert.ok(line, `libc is mapped: ${r.stdout.slice(0, 500)}`);
        // The inode number alone: a student's process sees the file through
        // the overlay (another device number) which reports the image file's
        // own inode number.
        return line.split(/\s+/)[4];
      };
      const student = await libc(false);
      const check = await libc(true);
      assert.notEqual(check, student, `a check's libc is the students' (${check})`);
      assert.equal(await libc(true), check, 'every check maps the same copy');
    },
  );

  /** Attacks from the second red team: paths redirected through /proc/self/cwd. */
  const REDIRECTS: [string, string, string, (r: { code: number; message: string }) => void][] = [
    [
      'the ELF interpreter of every check program (/lib64 -> /proc/self/cwd/...)',
      'mkdir -p /lib64x /root/lib64x && ln -s /usr/lib64/ld-linux-x86-64.so.2 /lib64x/ && ' +
        "printf '#!/bin/sh\\necho PWNED\\n' > /root/lib64x/ld-linux-x86-64.so.2 && chmod 755 /root/lib64x/* && " +
        'ln -sfn /proc/self/cwd/lib64x /lib64',
      'pass ok',
      // Before: the check's bash got the student's file as its interpreter and could not run.
      (r) => assert.deepEqual([r.code, r.message], [0, 'ok']),
    ],
    [
      'the cgroup files a check reads (/sys/fs/cgroup -> /proc/self/cwd/...)',
      'umount -R /sys/fs/cgroup && mount -t tmpfs none /sys/fs && ln -s /proc/self/cwd/cgx /sys/fs/cgroup && ' +
        'mkdir -p /cgx /root/cgx/cpu/lab && echo 50000 > /root/cgx/cpu/lab/cpu.cfs_quota_us',
      'q=$(cat /sys/fs/cgroup/cpu/lab/cpu.cfs_quota_us 2>/dev/null); [ "$q" = 50000 ] && pass "forged $q"; fail "no such group"',
      (r) => assert.deepEqual([r.code, r.message], [1, 'no such group']),
    ],
    [
      'the /proc a check reads (/proc -> /proc/self/cwd/...)',
      'mkdir -p /realproc && mount -t proc proc /realproc && umount -R -l /proc && rmdir /proc && ' +
        'ln -s /realproc/self/cwd/p /proc && mkdir -p /p /root/p/1 && echo "Name: fake" > /root/p/1/status',
      'grep -q "^Name:.*fake" /proc/1/status && pass forged; fail "$(grep ^Name: /proc/1/status)"',
      (r) => assert.match(r.message, /^Name:\s+underlay-init$/),
    ],
    [
      "bash's /dev/fd (process substitution reads through it)",
      'mkdir -p /tmp/fd && echo forged > /tmp/fd/63 && ln -sfn /tmp/fd /dev/fd',
      'read l < <(echo honest); [ "$l" = honest ] && pass ok; fail "$l"',
      (r) => assert.deepEqual([r.code, r.message], [0, 'ok']),
    ],
    [
      // Third red team: the student killed the `$(...)` of a check whose
      // empty output meant "nothing left". Stands in for that kill here.
      "a check's killed command substitution (it must fail, not read as empty)",
      'true',
      'left=$(kill -9 $BASHPID); [ -z "$left" ] && pass "nothing left"; fail "something left"',
      (r) => {
        assert.equal(r.code, 1);
        assert.match(r.message, /interrupted \(status 137\)/);
      },
    ],
  ];
  for (const [what, attack, check, expect] of REDIRECTS) {
    sysTest(`a student cannot redirect ${what}`, SYSTEM_NEEDS, async () => {
      ready();
      const victim = await m.create({ hostname: 'redirect' });
      try {
        const a = await victim.exec(['sh', '-c', attack], { cwd: '/' });
        assert.equal(a.code, 0, a.stderr);
        expect(await runScript(victim, check, { timeoutS: 20, env: {}, trusted: true }));
      } finally {
        await m.teardown(victim);
      }
    });
  }

  sysTest(
    'on a host whose mounts are shared (systemd makes / shared), checks add no mount to the host nor to the sandbox',
    SYSTEM_NEEDS,
    async () => {
      ready();
      // The images dir seen through a shared bind of its own, as every path
      // is under systemd. (This host's / is private, which hid the leak: on
      // Debian 12 each check's toolset landed in the host's namespace too,
      // doubling per check until move_mount failed with ENOSPC.)
      const shared = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-shared-images-'));
      const images = testConfig().imagesDir;
      execFileSync('mount', ['--bind', images, shared]);
      const mountsUnder = (info: string) =>
        info.split('\n').filter((l) => l.split(' ')[4]?.startsWith(shared)).length;
      let mm: SandboxManager | undefined;
      let victim: Sandbox | undefined;
      try {
        execFileSync('mount', ['--make-shared', shared]);
        const hostBefore = mountsUnder(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
        mm = new SandboxManager({
          config: loadConfig(testEnv({ UNDERLAY_IMAGES_DIR: shared })),
          store: testManager().store,
          logger: createLogger('warn'),
        });
        victim = await mm.create({ hostname: 'shared' });
        const count = async () => {
          const r = await victim!.exec(['sh', '-c', 'wc -l < /proc/self/mountinfo']);
          assert.equal(r.code, 0, r.stderr);
          return Number(r.stdout.trim());
        };
        const inside = await count();
        for (let i = 0; i < 3; i++) {
          const r = await runScript(victim, 'pass "$(cat /etc/hostname)"', {
            timeoutS: 20,
            env: {},
            trusted: true,
          });
          assert.equal(r.code, 0, r.message);
        }
        assert.equal(await count(), inside, "the sandbox's mount table grew with each check");
        // Nothing in a check's view is a peer of (or receives from) a host mount:
        // a mount placed under one would show up on the host as well.
        const view = await victim.exec(['cat', '/proc/self/mountinfo'], { trusted: true });
        assert.equal(view.code, 0, view.stderr);
        const linked = view.stdout.split('\n').filter((l) => / (shared|master):\d+/.test(l));
        assert.deepEqual(linked, [], 'mounts of the check view still linked to the host');
        const own = await victim.exec(['cat', '/proc/self/mountinfo']);
        assert.deepEqual(
          own.stdout.split('\n').filter((l) => / (shared|master):\d+/.test(l)),
          [],
          "mounts of the sandbox's namespace still linked to the host",
        );
        assert.equal(
          mountsUnder(fs.readFileSync('/proc/self/mountinfo', 'utf8')),
          hostBefore,
          "a check's mounts propagated into the host's namespace",
        );
      } finally {
        if (victim && mm) await mm.teardown(victim);
        execFileSync('umount', ['-R', '-l', shared]);
        fs.rmdirSync(shared);
      }
    },
    { timeout: 60_000 },
  );
});

describe('the first check toolset', () => {
  sysTest(
    "an image's old `tools` dir goes once no sandbox's check view names it",
    SYSTEM_NEEDS,
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-tools-'));
      try {
        const images = path.join(dir, 'images');
        const manager = (state: string) => {
          fs.mkdirSync(state, { recursive: true });
          const store = new Store(state);
          const config = { ...testConfig(), stateDir: state, imagesDir: images };
          const mgr = new SandboxManager({ config, store, logger: createLogger('error') });
          const drop = (id: string) =>
            (mgr as unknown as { dropFirstToolsTree(id: string): void }).dropFirstToolsTree(id);
          return { store, drop };
        };
        const old = (id: string) => path.join(images, id, 'tools');
        for (const id of ['a', 'b']) {
          fs.mkdirSync(path.join(old(id), 'bin'), { recursive: true });
          fs.writeFileSync(path.join(old(id), 'bin', 'prog'), 'x');
        }
        // A sandbox adopted from a server of that version still runs its checks from `b`'s.
        const withRecord = manager(path.join(dir, 's1'));
        withRecord.store.reserve(
          (k) => ({
            id: 'adopted',
            k,
            uidBase: 0,
            state: 'ready',
            initPid: null,
            initStart: null,
            usernsIno: null,
            ownerPid: 1,
            ownerStart: 0,
            ownerKind: 'server',
            hostname: 'old',
            createdAt: Date.now(),
            resources: {
              sessionDir: path.join(dir, 'x'),
              mounts: [],
              cgroupMode: 'v1',
              cgroupDirs: [],
              joinProcs: [],
              checkView: {
                trees: [{ hostDir: path.join(old('b'), 'bin'), target: 'usr/local/bin' }],
                binds: [],
                actions: [],
              } as never,
            },
          }),
          10,
        );
        withRecord.drop('a');
        withRecord.drop('b');
        await waitFor(() => !fs.existsSync(old('a')), 10_000);
        assert.ok(fs.existsSync(path.join(old('b'), 'bin', 'prog')), 'still named by a record');
        // A later start with no such sandbox left removes it.
        manager(path.join(dir, 's2')).drop('b');
        await waitFor(() => !fs.existsSync(old('b')), 10_000);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

async function waitFor(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}

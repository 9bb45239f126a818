/**
 * The sandbox against the real kernel, seen from the host and from inside.
 * No mocks: every assertion reads /proc, mountinfo, cgroupfs or the upper dir.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import type { Sandbox } from '../../server/sandbox/index';
import { nsInode } from '../../server/sandbox/index';
import { mountsContaining, pidsOwnedByRange, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, setupGuard, sysTest } from '../helpers/requires';

const NS_KINDS = ['user', 'mnt', 'pid', 'uts', 'ipc', 'net', 'cgroup'];

const { fail: setupFailed, ready } = setupGuard();

/**
 * The throttle tests print "<nr_throttled before> <after>" and then a line for
 * each limit of its own the session managed to raise (none may appear).
 */
function throttledAndNotRaised(r: { code: number; stdout: string; stderr: string }): void {
  assert.equal(r.code, 0, r.stderr);
  const [counts, ...rest] = r.stdout.trim().split('\n');
  const [a, b] = (counts ?? '').split(' ').map(Number);
  assert.ok((b ?? 0) > (a ?? 0), `nr_throttled must grow, was ${counts}`);
  assert.deepEqual(rest, [], `the session could raise its own limits: ${rest.join(', ')}`);
}

describe('one sandbox, seen from both sides', () => {
  let sb: Sandbox;
  const sh = (script: string, opts: { uid?: number; timeoutMs?: number } = {}) =>
    sb.exec(['bash', '-c', script], { ...opts, ...(opts.uid ? { gid: opts.uid } : {}) });

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      sb = await testManager().create({
        hostname: 'iso-test',
        limits: { pids: 96, memoryBytes: 128 * 1024 * 1024, scratchBytes: 32 * 1024 * 1024 },
      });
    } catch (err) {
      setupFailed(err);
    }
  });
  after(async () => {
    if (sb)
      await testManager()
        .teardown(sb.record)
        .catch(() => {});
  });

  sysTest('every namespace differs from the host (inode compare, host side)', SYSTEM_NEEDS, () => {
    ready();
    for (const kind of NS_KINDS) {
      assert.notEqual(
        nsInode(sb.initPid, kind),
        nsInode(process.pid, kind),
        `${kind} namespace is shared with the host`,
      );
    }
  });

  sysTest('every namespace differs from the host (seen from inside)', SYSTEM_NEEDS, async () => {
    ready();
    const r = await sh(
      `for k in ${NS_KINDS.join(' ')}; do stat -L -c "$k %i" /proc/self/ns/$k; done`,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const line of r.stdout.trim().split('\n')) {
      const [kind, ino] = line.split(' ');
      assert.notEqual(
        Number(ino),
        nsInode(process.pid, kind as string),
        `${kind} seen from inside equals the host's`,
      );
      assert.equal(
        Number(ino),
        nsInode(sb.initPid, kind as string),
        `${kind}: a joined process is not in the sandbox's namespace`,
      );
    }
  });

  sysTest("the host sees the sandbox's root as uid 100000+65536*k", SYSTEM_NEEDS, async () => {
    ready();
    const expected = testManager().config.uidBase + 65536 * sb.record.k;
    const status = fs.readFileSync(`/proc/${sb.initPid}/status`, 'utf8');
    assert.match(
      status,
      new RegExp(`^Uid:\\s+${expected}\\s+${expected}\\s+${expected}\\s+${expected}`, 'm'),
    );
    // Read from the host, the map is in host ids.
    const hostView = fs.readFileSync(`/proc/${sb.initPid}/uid_map`, 'utf8');
    assert.match(hostView, new RegExp(`^\\s*0\\s+${expected}\\s+65536`, 'm'));
    // Inside, in ids of the outer namespace the sandbox's is nested in
    // (docs/sandbox.md#per-sandbox-kernel-counts): root is root there, not on the host.
    const r = await sh('id -u; cat /proc/self/uid_map');
    assert.equal(r.stdout.split('\n')[0], '0');
    assert.match(r.stdout, /^\s*0\s+0\s+65536/m);
    assert.ok(expected >= 100000 && expected !== 0);
  });

  sysTest(
    "'/' inside is an overlay whose writes land in the session's upper layer",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const r = await sh('findmnt -no FSTYPE /; echo written-inside > /proof.txt; rm /etc/issue');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), 'overlay');
      const upper = path.join(sb.record.resources.sessionDir, 'scratch', 'upper');
      assert.equal(fs.readFileSync(path.join(upper, 'proof.txt'), 'utf8'), 'written-inside\n');
      const wh = fs.statSync(path.join(upper, 'etc', 'issue'));
      assert.ok(
        wh.isCharacterDevice() && wh.rdev === 0,
        'deleting a lower file must leave a whiteout in upper',
      );
      // The base image itself is untouched.
      const img = testManager().config.imagesDir;
      assert.ok(
        !fs.readdirSync(img).some((d) => fs.existsSync(path.join(img, d, 'rootfs', 'proof.txt'))),
      );
    },
  );

  sysTest(
    'the cgroup mount is what the host has: v1 hierarchies writable, the tmpfs holding them read-only; v2 its own cgroup2',
    SYSTEM_NEEDS,
    async () => {
      ready();
      if (testManager().driver.mode === 'v1') {
        // Writing cpu.max into a directory of that tmpfs "worked" and limited nothing.
        const r = await sh(
          'mkdir /sys/fs/cgroup/lab 2>&1; echo "rc=$?"; mkdir /sys/fs/cgroup/cpu/lab && echo cpu-ok && rmdir /sys/fs/cgroup/cpu/lab',
        );
        assert.match(r.stdout, /Read-only file system\nrc=1\ncpu-ok\n$/);
      } else {
        const r = await sh(
          'stat -fc %T /sys/fs/cgroup; mkdir /sys/fs/cgroup/lab && rmdir /sys/fs/cgroup/lab && echo ok',
        );
        assert.equal(r.stdout, 'cgroup2fs\nok\n');
      }
    },
  );

  sysTest('hostname is isolated in both directions', SYSTEM_NEEDS, async () => {
    ready();
    const before = os.hostname();
    const r = await sh('hostname; hostname pwned; hostname');
    assert.equal(r.stdout, 'iso-test\npwned\n');
    assert.equal(os.hostname(), before);
    assert.equal(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8').trim(), before);
    await sh('hostname iso-test');
  });

  sysTest('nested unshare --pid --fork --mount-proc --uts --ipc works', SYSTEM_NEEDS, async () => {
    ready();
    const r = await sh(
      "unshare --pid --fork --mount-proc --uts --ipc bash -c 'hostname nested; echo $$; hostname; ps -e --no-headers | wc -l; ipcmk -Q >/dev/null; ipcs -q | grep -c 0x'; hostname; ipcs -q | grep -c 0x || true",
    );
    assert.equal(r.code, 0, r.stderr);
    const [pid1, host, nprocs, queues, outerHost, outerQueues] = r.stdout.trim().split('\n');
    assert.equal(pid1, '1', 'the nested shell is PID 1 of its namespace');
    assert.equal(host, 'nested');
    assert.ok(Number(nprocs) <= 3, `nested ps sees only its own processes, saw ${nprocs}`);
    assert.equal(queues, '1');
    assert.equal(outerHost, 'iso-test', 'the nested hostname leaked out');
    assert.equal(outerQueues, '0', 'the nested message queue leaked out');
  });

  sysTest(
    'an overlay mounted inside (upper on the session disk, userxattr) works; deleting a lower file leaves a 0/0 whiteout',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const r = await sh(`set -e
      mkdir -p /tmp/ov/lower /tmp/ov/upper /tmp/ov/work /tmp/ov/merged
      echo a > /tmp/ov/lower/a.txt; echo b > /tmp/ov/lower/b.txt
      mount -t overlay overlay -o userxattr,lowerdir=/tmp/ov/lower,upperdir=/tmp/ov/upper,workdir=/tmp/ov/work /tmp/ov/merged
      echo more >> /tmp/ov/merged/a.txt
      rm /tmp/ov/merged/b.txt
      stat -c '%F %t:%T' /tmp/ov/upper/b.txt
      cat /tmp/ov/upper/a.txt; cat /tmp/ov/lower/a.txt
      findmnt -no OPTIONS /tmp/ov/merged`);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines[0], 'character special file 0:0');
      assert.deepEqual(
        lines.slice(1, 4),
        ['a', 'more', 'a'],
        'copy-up must leave the lower file unchanged',
      );
      assert.match(lines[4] ?? '', /userxattr/);
    },
  );

  sysTest(
    'a copy of ping run as learner fails with EPERM, and works after setcap cap_net_raw+ep',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const asLearner =
        'setpriv --reuid=1000 --regid=1000 --clear-groups /home/learner/myping -c1 -W2 127.0.0.1';
      const r1 = await sh(`cp /usr/bin/ping /home/learner/myping && ${asLearner}`);
      assert.notEqual(r1.code, 0, 'a plain copy must not ping');
      assert.match(r1.stderr, /Operation not permitted|missing cap_net_raw/);
      const r2 = await sh(
        `setcap cap_net_raw+ep /home/learner/myping && getcap /home/learner/myping && ${asLearner}`,
      );
      assert.equal(r2.code, 0, r2.stderr);
      assert.match(r2.stdout, /cap_net_raw=ep/);
      assert.match(r2.stdout, /1 received/);
      // From the host, the capability is a v3 (namespaced) one whose rootid is the session's root.
      const upperFile = path.join(
        sb.record.resources.sessionDir,
        'scratch',
        'upper',
        'home',
        'learner',
        'myping',
      );
      assert.ok(fs.existsSync(upperFile));
    },
  );

  sysTest(
    'a child cgroup with a lower cpu quota throttles a busy loop; raising own limits fails',
    [...SYSTEM_NEEDS, 'cgroup-v1'],
    async () => {
      ready();
      const r = await sh(`C=/sys/fs/cgroup/cpu
      mkdir $C/lab && echo 50000 > $C/lab/cpu.cfs_quota_us || exit 3
      (while :; do :; done) & L=$!
      echo $L > $C/lab/cgroup.procs || exit 4
      a=$(awk '/^nr_throttled/{print $2}' $C/lab/cpu.stat); sleep 1.5
      b=$(awk '/^nr_throttled/{print $2}' $C/lab/cpu.stat); kill $L
      echo "$a $b"
      echo 200000 > $C/lab/cpu.cfs_quota_us 2>/dev/null && echo child-above-parent-allowed
      echo 200000 > $C/cpu.cfs_quota_us 2>/dev/null && echo raised-cpu
      echo 9999999999 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null && echo raised-memory
      echo 100000 > /sys/fs/cgroup/pids/pids.max 2>/dev/null && echo raised-pids
      true`);
      throttledAndNotRaised(r);
    },
  );

  sysTest(
    'v2: a child cgroup with a lower cpu.max throttles a busy loop; raising own limits fails',
    [...SYSTEM_NEEDS, 'cgroup-v2-only'],
    async () => {
      ready();
      const r = await sh(`C=/sys/fs/cgroup
      echo +cpu > $C/cgroup.subtree_control || exit 2
      mkdir $C/lab && echo "50000 100000" > $C/lab/cpu.max || exit 3
      (while :; do :; done) & L=$!
      echo $L > $C/lab/cgroup.procs || exit 4
      a=$(awk '/^nr_throttled/{print $2}' $C/lab/cpu.stat); sleep 1.5
      b=$(awk '/^nr_throttled/{print $2}' $C/lab/cpu.stat); kill $L
      echo "$a $b"
      echo max > $C/cpu.max 2>/dev/null && echo raised-cpu
      echo max > $C/memory.max 2>/dev/null && echo raised-memory
      echo max > $C/pids.max 2>/dev/null && echo raised-pids
      true`);
      throttledAndNotRaised(r);
    },
  );

  sysTest(
    'a fork bomb stops at the pids limit, refused by RLIMIT_NPROC first, and the host is unaffected',
    SYSTEM_NEEDS,
    async () => {
      ready();
      // The pids controller refuses a fork only after the page tables are
      // copied; RLIMIT_NPROC (pids.max less a margin, out of sandbox root's reach)
      // refuses it at the start, so the pids controller never has to.
      const pidsDir = sb.record.resources.cgroupDirs.find((d) =>
        fs.existsSync(path.join(d, 'pids.events')),
      );
      assert.ok(pidsDir, 'the session has a pids cgroup');
      // Summed over the session's subtree: before Linux 6.11 (and with
      // pids_localevents) v2 counts a refusal in the forking task's own
      // cgroup (the `init` leaf), not where the limit is.
      const refusedByPids = (dir: string = pidsDir): number =>
        Number(/^max (\d+)$/m.exec(fs.readFileSync(path.join(dir, 'pids.events'), 'utf8'))?.[1]) +
        fs
          .readdirSync(dir, { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .reduce((n, e) => n + refusedByPids(path.join(dir, e.name)), 0);
      const refusedBefore = refusedByPids();
      const lim = await sh('ulimit -Su; ulimit -Hu; ulimit -Hu 100000 2>/dev/null && echo raised');
      // pids.max less a margin (an eighth of it, at most 16) for other uids' processes
      assert.deepEqual(lim.stdout.trim().split('\n'), ['84', '84'], lim.stdout + lim.stderr);
      const r = await sh(
        `python3 - <<'EOF'
import os, errno
# Each child waits for the end of the pipe, so all of them live until the
# limit is hit, and all of them are gone (reaped) before we print: later
# tests get their pids back. (A pkill afterwards could not even fork.)
r, w = os.pipe()
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        err = errno.errorcode[e.errno]; break
    if pid == 0:
        os.close(w); os.read(r, 1); os._exit(0)
    n += 1
os.close(w)
for _ in range(n):
    os.wait()
print(n, err)
EOF`,
        { timeoutMs: 30_000 },
      );
      const [n, code] = r.stdout.trim().split(' ');
      assert.equal(code, 'EAGAIN', r.stdout + r.stderr);
      assert.ok(Number(n) > 10 && Number(n) < 96, `forked ${n} times with pids.max=96`);
      assert.equal(
        refusedByPids(),
        refusedBefore,
        'the pids controller refused a fork: RLIMIT_NPROC did not',
      );
    },
  );

  sysTest(
    "a joined command is in the sandbox init's cgroup of every hierarchy, moved there by writing 0 (itself)",
    SYSTEM_NEEDS,
    async () => {
      ready();
      // Both seen through the sandbox's cgroup namespace: a hierarchy the
      // join missed would show a path other than init's.
      const r = await sh('cat /proc/self/cgroup; echo --; cat /proc/1/cgroup');
      const [mine, init] = r.stdout.split('--\n').map((t) => t.trim());
      assert.ok(mine && init, r.stdout + r.stderr);
      assert.equal(mine, init);
      // v1: `tasks` + "0" moves the calling thread without the write lock a
      // cgroup.procs write takes (cgroups.ts SessionCgroup.joinProcs); v2,
      // and the hybrid's unified hierarchy, have no such file for a domain
      // cgroup.
      const CGROUP2_MAGIC = 0x63677270;
      const files = sb.record.resources.joinProcs;
      for (const f of files) {
        const v2 = fs.statfsSync(path.dirname(f)).type === CGROUP2_MAGIC;
        assert.equal(path.basename(f), v2 ? 'cgroup.procs' : 'tasks', f);
      }
      // What the helper writes, seen in a plain file given as one more
      // cgroup file (it opens without O_CREAT): "0", never a pid, which
      // would take the lock again.
      const probe = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'join-')), 'tasks');
      fs.writeFileSync(probe, '');
      try {
        const j = await sb.exec(['true'], { cgroupProcs: [...files, probe] });
        assert.equal(j.code, 0, j.stderr);
        assert.equal(fs.readFileSync(probe, 'utf8'), '0');
      } finally {
        fs.rmSync(path.dirname(probe), { recursive: true, force: true });
      }
    },
  );

  sysTest('a memory hog is OOM-killed inside the session only', SYSTEM_NEEDS, async () => {
    ready();
    const r = await sh(
      `python3 -c "b = bytearray(400*1024*1024); print('survived')"; echo "rc=$?"; echo alive`,
    );
    assert.match(r.stdout, /rc=137/, `the hog should be SIGKILLed, got: ${r.stdout} ${r.stderr}`);
    assert.match(r.stdout, /alive/);
    assert.doesNotMatch(r.stdout, /survived/);
    assert.ok(fs.existsSync(`/proc/${sb.initPid}`), 'the sandbox init died with the hog');
  });

  sysTest('filling the disk stops at the scratch limit', SYSTEM_NEEDS, async () => {
    ready();
    const r = await sh(
      'dd if=/dev/zero of=/fill bs=1M count=100 2>&1; stat -c %s /fill; rm -f /fill',
    );
    assert.match(r.stdout, /No space left on device/);
    const size = Number(r.stdout.trim().split('\n').at(-1));
    assert.ok(size <= 32 * 1024 * 1024, `wrote ${size} bytes into a 32M scratch`);
  });

  sysTest(
    '/, /tmp and /lab are one ext4 session disk of the requested size: user xattrs work in each, none of it is tmpfs memory',
    SYSTEM_NEEDS,
    async () => {
      ready();
      // user.* xattrs are what a userxattr overlay needs of its upper dir (tmpfs has them only from 6.6).
      const r = await sh(`set -e
      for d in /root /tmp /lab; do
        touch $d/x && setfattr -n user.t -v ok $d/x
        echo "$d $(stat -fc %T $d) $(getfattr --only-values -n user.t $d/x) $(df -B1 --output=size $d | tail -1 | tr -d " ")"
      done
      grep -E ' /(tmp|lab) ' /proc/self/mountinfo | awk '{ print $5, $(NF-2) }'`);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      for (const [i, d] of ['/root', '/tmp', '/lab'].entries()) {
        const [where, fstype, xattr, size] = (lines[i] ?? '').split(' ');
        assert.equal(where, d);
        // stat -f names ext4 "ext2/ext3" (one magic number for the family).
        if (d !== '/root') assert.equal(fstype, 'ext2/ext3', `${d} is on ${fstype}`);
        assert.equal(xattr, 'ok', `user.* xattr on ${d}`);
        // The whole disk less ext4's own structures, never more than asked.
        const bytes = Number(size);
        assert.ok(bytes > 24 * 1024 * 1024 && bytes <= 32 * 1024 * 1024, `${d}: ${size} bytes`);
      }
      assert.deepEqual(lines.slice(3), ['/tmp ext4', '/lab ext4']);
      // From the host: the same disk holds the root's upper layer.
      const upper = path.join(sb.record.resources.sessionDir, 'scratch', 'upper', 'root', 'x');
      assert.ok(fs.existsSync(upper), 'the root overlay writes to the session disk');
    },
  );

  sysTest('a shell sees only fds 0, 1, 2 (and its own)', SYSTEM_NEEDS, async () => {
    ready();
    // Open extra fds in the test process first: none may reach the sandbox.
    const leak = fs.openSync('/etc/hostname', 'r');
    try {
      const r = await sb.exec(['sh', '-c', 'ls /proc/$$/fd']);
      assert.deepEqual(r.stdout.trim().split('\n').map(Number).sort(), [0, 1, 2]);
      const r2 = await sb.exec(['sh', '-c', 'for f in /proc/$$/fd/*; do readlink $f; done']);
      assert.doesNotMatch(r2.stdout, /\/etc\/hostname|\/dev\/pts|ptmx/);
    } finally {
      fs.closeSync(leak);
    }
  });

  sysTest(
    'after teardown nothing is left: processes, mounts, cgroups, files, id range',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const m = testManager();
      const other = await m.create({ hostname: 'gone' });
      await other.exec([
        'bash',
        '-c',
        'nohup sleep 300 >/dev/null 2>&1 & setsid sleep 300 & (sleep 300 &) ; mkdir /sys/fs/cgroup/cpu/mine 2>/dev/null; true',
      ]);
      const r = other.record;
      assert.ok(pidsOwnedByRange(r.uidBase).length >= 3);
      await m.teardown(r);
      assert.deepEqual(pidsOwnedByRange(r.uidBase), [], 'processes survived teardown');
      assert.deepEqual(mountsContaining(r.id), [], 'mounts survived teardown');
      for (const d of r.resources.cgroupDirs) assert.ok(!fs.existsSync(d), `cgroup ${d} survived`);
      assert.ok(!fs.existsSync(r.resources.sessionDir), 'session files survived');
      assert.equal(m.store.get(r.id), undefined, 'the id range was not released');
      // Idempotent: a second teardown is a no-op.
      await m.teardown(r);
    },
  );
});

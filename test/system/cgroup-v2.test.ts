/**
 * The cgroup v2 driver on the v2 hierarchy: of this hybrid host
 * (/sys/fs/cgroup/unified, whose only controller is hugetlb), and of the
 * VM tier's Debian 12 guest (v2 only, test/vm/): structure, delegation, and
 * the no-internal-processes leaf rule, with a real sandbox.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { V2Driver } from '../../server/sandbox/cgroups';
import { SandboxManager, type Sandbox } from '../../server/sandbox/index';
import { createLogger } from '../../server/util/logger';
import { testConfig, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, setupGuard, sysTest } from '../helpers/requires';

const V2 = fs.existsSync('/sys/fs/cgroup/unified/cgroup.controllers')
  ? '/sys/fs/cgroup/unified'
  : '/sys/fs/cgroup';
const NEEDS = [...SYSTEM_NEEDS, 'cgroup-v2-hierarchy' as const];

const { fail: setupFailed, ready } = setupGuard();

describe('cgroup v2 driver', () => {
  let m: SandboxManager;
  let sb: Sandbox;
  let ctrl = '';
  let rootSubtreeBefore = '';

  before(async () => {
    if (process.getuid?.() !== 0 || !fs.existsSync(path.join(V2, 'cgroup.controllers'))) return;
    // A controller that enforces the no-internal-processes rule: on a v2-only
    // host the first one listed is cpuset, which (like cpu and pids) may be
    // enabled in a cgroup that holds processes, so it cannot show the rule.
    const available = fs.readFileSync(path.join(V2, 'cgroup.controllers'), 'utf8').split(/\s+/);
    ctrl = ['memory', 'io', 'hugetlb'].find((c) => available.includes(c)) ?? '';
    rootSubtreeBefore = fs.readFileSync(path.join(V2, 'cgroup.subtree_control'), 'utf8').trim();
    m = new SandboxManager({
      config: testConfig(),
      store: testManager().store,
      driver: new V2Driver({ mountPoint: V2, want: ctrl ? [ctrl] : [] }),
      logger: createLogger('warn'),
    });
    try {
      sb = await m.create({ hostname: 'v2' });
    } catch (err) {
      setupFailed(err);
    }
  });

  after(async () => {
    if (sb) await m.teardown(sb.record).catch(() => {});
    // Give back what we enabled on this shared host hierarchy.
    if (ctrl && !rootSubtreeBefore.split(' ').includes(ctrl)) {
      const base = path.join(V2, 'underlay');
      for (const f of [
        path.join(base, 'cgroup.subtree_control'),
        path.join(V2, 'cgroup.subtree_control'),
      ]) {
        try {
          fs.writeFileSync(f, `-${ctrl}`);
        } catch {
          // still in use by a live session elsewhere: leave it
        }
      }
    }
  });

  sysTest(
    'session cgroup with a leaf `init`, delegated by ownership of the delegation files only',
    NEEDS,
    () => {
      ready();
      const [dir, leaf] = sb.record.resources.cgroupDirs as [string, string];
      assert.equal(leaf, path.join(dir, 'init'));
      const uid = sb.record.uidBase;
      for (const d of [dir, leaf]) {
        for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) {
          assert.equal(
            fs.statSync(path.join(d, f)).uid,
            uid,
            `${path.join(d, f)} is not delegated`,
          );
        }
      }
      for (const f of fs.readdirSync(dir)) {
        if (
          !/^cgroup\.(procs|threads|subtree_control)$/.test(f) &&
          fs.statSync(path.join(dir, f)).isFile()
        ) {
          assert.equal(
            fs.statSync(path.join(dir, f)).uid,
            0,
            `${f} (a limit of the session) must stay host-owned`,
          );
        }
      }
      // The sandbox's processes sit in the leaf, not in the session cgroup itself.
      assert.equal(fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8'), '');
      assert.match(
        fs.readFileSync(path.join(leaf, 'cgroup.procs'), 'utf8'),
        new RegExp(`^${sb.initPid}$`, 'm'),
      );
      if (ctrl)
        assert.match(
          fs.readFileSync(path.join(dir, 'cgroup.subtree_control'), 'utf8'),
          new RegExp(ctrl),
        );
    },
  );

  sysTest(
    'a student cannot make more than 128 cgroups nor nest deeper than 8 (host-owned cgroup.max.*)',
    NEEDS,
    async () => {
      ready();
      const r = await sb.exec(
        [
          'sh',
          '-c',
          'i=0; while [ $i -lt 1000 ] && mkdir /sys/fs/cgroup/c$i 2>/dev/null; do i=$((i+1)); done; echo $i; ' +
            'mkdir -p /sys/fs/cgroup/c0/1/2/3/4/5/6/7/8/9 2>/dev/null; echo deep=$?; ' +
            'echo 100000 > /sys/fs/cgroup/cgroup.max.descendants 2>/dev/null; echo raise=$?; ' +
            'rmdir /sys/fs/cgroup/c0/1/2/3/4/5/6/7/8/9 /sys/fs/cgroup/c0/1/2/3/4/5/6/7/8 /sys/fs/cgroup/c0/1/2/3/4/5/6/7 ' +
            '/sys/fs/cgroup/c0/1/2/3/4/5/6 /sys/fs/cgroup/c0/1/2/3/4/5 /sys/fs/cgroup/c0/1/2/3/4 /sys/fs/cgroup/c0/1/2/3 ' +
            '/sys/fs/cgroup/c0/1/2 /sys/fs/cgroup/c0/1 /sys/fs/cgroup/c[0-9]* 2>/dev/null; true',
        ],
        { timeoutMs: 60_000 },
      );
      const [made, deep, raise] = r.stdout.trim().split('\n');
      assert.ok(Number(made) > 0 && Number(made) < 128, `the student made ${made} cgroups`);
      assert.equal(deep, 'deep=1', 'nesting 10 deep must fail');
      assert.match(raise ?? '', /^raise=[1-9]$/, "the bound is not the student's to raise");
    },
  );

  sysTest(
    'inside: /sys/fs/cgroup is the session (cgroup namespace), processes are in /init',
    NEEDS,
    async () => {
      ready();
      const r = await sb.exec([
        'sh',
        '-c',
        'stat -fc %T /sys/fs/cgroup; cat /proc/self/cgroup | grep "^0::"; ls /sys/fs/cgroup | grep -x init',
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['cgroup2fs', '0::/init', 'init']);
    },
  );

  sysTest(
    'the leaf rule: controllers cannot be enabled in a cgroup that holds processes; a child group can be made and used',
    NEEDS,
    async () => {
      ready();
      const r = await sb.exec([
        'bash',
        '-c',
        `C=/sys/fs/cgroup
       echo +${ctrl} > $C/init/cgroup.subtree_control 2>/dev/null && echo leaf-enable-allowed
       mkdir $C/lab && echo $$ > $C/lab/cgroup.procs && grep -x 0::/lab /proc/self/cgroup
       echo -${ctrl} > $C/cgroup.subtree_control && echo +${ctrl} > $C/cgroup.subtree_control && echo ns-root-enable-ok
       true`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['0::/lab', 'ns-root-enable-ok']);
    },
  );

  sysTest(
    "the session cannot raise its own limits, but may set its children's",
    NEEDS,
    async () => {
      ready();
      const limit =
        ctrl === 'hugetlb' ? 'hugetlb.2MB.max' : ctrl === 'memory' ? 'memory.max' : `${ctrl}.max`;
      const r = await sb.exec([
        'bash',
        '-c',
        `C=/sys/fs/cgroup
       [ -e $C/${limit} ] || { echo no-limit-file; exit 0; }
       echo max > $C/${limit} 2>/dev/null && echo raised-own
       mkdir -p $C/kid && echo 2097152 > $C/kid/${limit} && echo child-set
       true`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.trim().split('\n'), ['child-set']);
    },
  );

  sysTest(
    'a create migrates nothing: the child is born in the session cgroup and init in its leaf',
    NEEDS,
    async () => {
      ready();
      // Every migration (a cgroup.procs write) is a cgroup_attach_task event;
      // a process born in its cgroup by clone3(CLONE_INTO_CGROUP) is not.
      const tracing = '/sys/kernel/tracing';
      if (!fs.existsSync(path.join(tracing, 'instances')))
        execFileSync('mount', ['-t', 'tracefs', 'tracefs', tracing]);
      const inst = path.join(tracing, 'instances', `underlay-test-${process.pid}`);
      fs.mkdirSync(inst);
      let other: Sandbox | undefined;
      try {
        const ev = path.join(inst, 'events', 'cgroup', 'cgroup_attach_task');
        const traced = async (what: () => Promise<unknown>, id: () => string) => {
          fs.writeFileSync(path.join(inst, 'trace'), '');
          fs.writeFileSync(path.join(ev, 'enable'), '1');
          try {
            await what();
          } finally {
            fs.writeFileSync(path.join(ev, 'enable'), '0');
          }
          return fs
            .readFileSync(path.join(inst, 'trace'), 'utf8')
            .split('\n')
            .filter((l) => l.includes('cgroup_attach_task') && l.includes(`/${id()}`));
        };
        const created = await traced(
          async () => (other = await m.create({ hostname: 'v2-born' })),
          () => other!.record.id,
        );
        assert.deepEqual(created, [], 'the create migrated processes');
        // The control: a migration, as the create's were before, is seen.
        const moved = await traced(
          () =>
            other!.exec([
              'sh',
              '-c',
              'mkdir /sys/fs/cgroup/moved && echo $$ > /sys/fs/cgroup/moved/cgroup.procs',
            ]),
          () => `${other!.record.id}/moved`,
        );
        assert.equal(moved.length, 1, `the control migration was not traced: ${moved.join('\n')}`);
      } finally {
        if (other) await m.teardown(other.record);
        fs.rmdirSync(inst);
      }
    },
  );

  sysTest(
    'teardown removes student-made cgroups too (cgroup.kill, then depth-first rmdir)',
    NEEDS,
    async () => {
      ready();
      await sb.exec(['bash', '-c', 'mkdir -p /sys/fs/cgroup/deep/er; (sleep 300 &) ; echo ok']);
      const dirs = [...sb.record.resources.cgroupDirs];
      await m.teardown(sb.record);
      for (const d of dirs) assert.ok(!fs.existsSync(d), `${d} survived`);
      sb = undefined as unknown as Sandbox;
    },
  );
});

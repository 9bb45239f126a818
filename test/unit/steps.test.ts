import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Op } from '../../native/index';
import { buildOps } from '../../server/sandbox/steps';

const cg = {
  mode: 'v1' as const,
  dirs: [],
  attachProcs: ['/cg/cgroup.procs'],
  joinProcs: [],
  initOps: (): Op[] => [],
  afterStart: () => {},
};
const plan = {
  uidBase: 165536,
  gidBase: 165536,
  hostname: 'lab',
  imageRoot: '/img',
  lowerDir: '/s/lower',
  idmap: true,
  upperDir: '/s/up',
  workDir: '/s/work',
  mergedDir: '/s/merged',
  cgroup: cg,
  tmpDir: '/s/scratch/tmp',
  labDir: '/s/scratch/lab',
  shmBytes: 1 << 20,
  runBytes: 1 << 20,
  shmInodes: 100,
  runInodes: 100,
};
const ops = buildOps(plan);
const idx = (pred: (o: Op) => boolean) => ops.findIndex(pred);

test('the step order follows the architecture: userns first, maps, idmap, the child started early, the wait for the session disk and cgroups, the cgroup attach (overlapped), overlay, nested userns and every namespace but mnt before the host is done, mnt after it, the cgroup namespace only after the attach, then the rest', () => {
  const order = [
    idx((o) => o.op === 'clone-userns'),
    idx((o) => o.op === 'write-child-proc' && o.file === 'uid_map'),
    idx((o) => o.op === 'idmap-mount'),
    idx((o) => o.op === 'start-child'),
    idx((o) => o.op === 'await-scratch'),
    idx((o) => o.op === 'attach-child'),
    idx((o) => o.op === 'mount' && o.fstype === 'overlay'),
    idx((o) => o.op === 'release-child'),
    idx((o) => o.op === 'write' && o.path.startsWith('/proc/sys/user/')),
    idx((o) => o.op === 'nest-userns'),
    idx((o) => o.op === 'unshare' && o.ns.includes('CLONE_NEWPID')),
    idx((o) => o.op === 'await-host'),
    idx((o) => o.op === 'unshare' && o.ns.includes('CLONE_NEWNS')),
    idx((o) => o.op === 'await-attach'),
    idx((o) => o.op === 'unshare' && o.ns.includes('CLONE_NEWCGROUP')),
    idx((o) => o.op === 'fork-init'),
    idx((o) => o.op === 'mount' && o.source === '/s/merged' && o.target === '/s/merged'),
    idx((o) => o.op === 'pivot-root'),
    idx((o) => o.op === 'mask'),
    idx((o) => o.op === 'sethostname'),
    idx((o) => o.op === 'init-loop'),
  ];
  assert.ok(
    order.every((i) => i >= 0),
    `missing op: ${order}`,
  );
  assert.deepEqual(
    [...order].sort((a, b) => a - b),
    order,
  );
  assert.equal(ops.at(-1)?.op, 'init-loop');
});

test('host uid 0 is never mapped; the range is 65536 wide', () => {
  const maps = ops.filter(
    (o): o is Extract<Op, { op: 'write-child-proc' }> => o.op === 'write-child-proc',
  );
  for (const m of maps) assert.equal(m.content, '0 165536 65536');
});

test('the overlay root is not nosuid (file capabilities must work), but nodev', () => {
  const ov = ops.find((o) => o.op === 'mount' && o.fstype === 'overlay') as Extract<
    Op,
    { op: 'mount' }
  >;
  assert.ok(!ov.flags.includes('MS_NOSUID'));
  assert.ok(ov.flags.includes('MS_NODEV'));
  assert.equal(ov.data, 'lowerdir=/s/lower,upperdir=/s/up,workdir=/s/work');
});

test('all namespaces are unshared; the ping group range is the netns default', () => {
  const unshared = ops.flatMap((o) => (o.op === 'unshare' ? o.ns : []));
  assert.deepEqual([...unshared].sort(), [
    'CLONE_NEWCGROUP',
    'CLONE_NEWIPC',
    'CLONE_NEWNET',
    'CLONE_NEWNS',
    'CLONE_NEWPID',
    'CLONE_NEWUTS',
  ]);
  assert.ok(
    ops.some(
      (o) =>
        o.op === 'write' && o.path === '/proc/sys/net/ipv4/ping_group_range' && o.content === '1 0',
    ),
  );
});

test('nothing before the wait for the session disk touches it', () => {
  const gate = idx((o) => o.op === 'await-scratch');
  const before = JSON.stringify(ops.slice(0, gate));
  for (const dir of ['/s/up', '/s/work', '/s/scratch']) assert.ok(!before.includes(dir), dir);
});

test('cgroup v2: the child is born in the session cgroup and init in its leaf, nothing is migrated', () => {
  const v2 = buildOps({
    ...plan,
    cgroup: {
      ...cg,
      mode: 'v2',
      attachProcs: [],
      cloneInto: '/cg/session',
      initInto: '/cg/session/init',
    },
  });
  assert.deepEqual(v2[0], { step: 'cgroup', op: 'clone-into-cgroup', dir: '/cg/session' });
  assert.equal(v2[1]?.op, 'clone-userns');
  assert.ok(!v2.some((o) => o.op === 'attach-child'));
  // The child still waits before it unshares its cgroup namespace (the
  // helper falls back to attaching on a kernel without CLONE_INTO_CGROUP).
  const wait = v2.findIndex((o) => o.op === 'await-attach');
  const cgns = v2.findIndex((o) => o.op === 'unshare' && o.ns.includes('CLONE_NEWCGROUP'));
  assert.ok(wait >= 0 && wait < cgns);
  // init is born in the leaf, after the cgroup namespace is made in the session.
  const initInto = v2.findIndex((o) => o.op === 'init-into-cgroup');
  assert.deepEqual(v2[initInto], {
    step: 'cgroup',
    op: 'init-into-cgroup',
    dir: '/cg/session/init',
  });
  assert.ok(cgns < initInto && initInto < v2.findIndex((o) => o.op === 'fork-init'));
  // v1 has no such call.
  assert.ok(!ops.some((o) => o.op === 'clone-into-cgroup' || o.op === 'init-into-cgroup'));
});

import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { v1Hierarchies } from '../../server/sandbox/cgroups';
import { hintFor } from '../../server/sandbox/hints';

const MOUNTINFO = `35 25 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
36 35 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
37 35 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
38 35 0:33 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
39 35 0:34 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw`;
const SELF = `5:cpuacct,cpu:/system.slice/underlay.service
4:memory:/system.slice/underlay.service
1:name=systemd:/system.slice/underlay.service
0::/system.slice/underlay.service`;

test('v1 hierarchies: co-mounted controllers are matched as sets, own paths found', () => {
  const h = v1Hierarchies(MOUNTINFO, SELF);
  const cpu = h.find((x) => x.controllers.includes('cpu'));
  assert.equal(cpu?.mountPoint, '/sys/fs/cgroup/cpu,cpuacct');
  assert.equal(cpu?.own, '/system.slice/underlay.service');
  assert.equal(cpu?.key, 'cpuacct,cpu');
  assert.equal(
    h.find((x) => x.controllers.includes('memory'))?.mountPoint,
    '/sys/fs/cgroup/memory',
  );
  assert.ok(!h.some((x) => x.mountPoint.endsWith('unified')), 'cgroup2 is not a v1 hierarchy');
  // systemd mounts its named hierarchy with xattr: the flag must not hide it.
  assert.equal(h.find((x) => x.key === 'name=systemd')?.mountPoint, '/sys/fs/cgroup/systemd');
});

test('hints match on syscall and code, most specific first', () => {
  assert.match(hintFor('mount_setattr', 'EINVAL') ?? '', /5\.19/);
  assert.match(hintFor('pivot_root', 'EINVAL') ?? '', /self-bind/);
  assert.match(hintFor('write', 'ENOSPC') ?? '', /size limit/);
  assert.equal(hintFor('read', 'EIO'), undefined);
});

/**
 * Live kernel-state panels over the socket, against `underlay serve` and a
 * real sandbox: a step's panels stream while watched (a new PID namespace
 * made in the student's terminal shows up as a group of its own; a cgroup's
 * CPU use and quota; an overlay's whiteout; a file capability); unwatch ends
 * the reader inside the sandbox; a step without panels, or a bad payload, is
 * a protocol error. The rate of updates: test/unit/panel-feed.test.ts.
 */
import * as assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import type {
  CapabilitiesPanel,
  CgroupCpuPanel,
  LabSession,
  MountsPanel,
  NamespacesPanel,
  OverlayPanel,
  PanelUpdate,
} from '../../server/protocol/index';
import { timeScale } from '../../server/config';
import { serverSuite } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { TermClient } from '../helpers/term-client';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** Resolves with the first update (after `since`) that `pick` accepts. */
function nextUpdate<T>(
  updates: PanelUpdate[],
  pick: (u: PanelUpdate) => T | undefined,
  since = 0,
  timeoutMs = 20_000 * timeScale(),
): Promise<T> {
  const end = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = () => {
      for (const u of updates.slice(since)) {
        const v = pick(u);
        if (v !== undefined) return resolve(v);
      }
      if (Date.now() > end)
        return reject(
          new Error(`no such panel update; last: ${JSON.stringify(updates.at(-1)).slice(0, 600)}`),
        );
      setTimeout(poll, 50);
    };
    poll();
  });
}

describe('live panels', () => {
  const server = serverSuite(before, after);

  async function labSocket(lab: string) {
    const s = server();
    const student = new CookieClient(s.url);
    const ls = (await student.ok('POST', `/api/labs/${lab}/session`)) as unknown as LabSession;
    const sock = await TermClient.connect(s.url, { session: ls.session, token: ls.token });
    const t1 = ls.terminals[0]?.term as string;
    assert.equal((await sock.open({ term: t1, cols: 120, rows: 40 })).ok, true);
    const updates: PanelUpdate[] = [];
    sock.socket.on('panel:data', (u) => updates.push(u));
    const end = async () => {
      sock.close();
      await student.call('DELETE', `/api/labs/${lab}/session`);
    };
    return { sock, t1, updates, end };
  }

  sysTest(
    "namespaces: a PID namespace made in the student's shell shows up; unwatch ends the reader",
    SYSTEM_NEEDS,
    async () => {
      const { sock, t1, updates, end } = await labSocket('ns-pid');
      try {
        sock.socket.emit('panel:watch', { step: 'mount-proc' });
        const groups = (u: PanelUpdate) =>
          (u.panels[0] as NamespacesPanel | undefined)?.types.find((t) => t.type === 'pid')?.groups;
        const first = await nextUpdate(updates, groups);
        assert.equal(first.length, 1, 'one PID namespace: the sandbox');
        assert.equal(first[0]?.sandbox, true);
        assert.equal(updates[0]?.step, 'mount-proc');
        const n = updates.length;
        await sock.run(t1, 'unshare --pid --fork --mount-proc sleep 300 & sleep 0.1');
        // The namespace appears with `unshare`'s child in it, which becomes
        // the sleep once it has exec'd: a sample may fall in between, so wait
        // for the sleep (a namespace holding anything else would never match).
        const split = await nextUpdate(
          updates,
          (u) => {
            const g = groups(u);
            const mine = g?.find((x) => !x.sandbox);
            return g && g.length === 2 && mine?.procs.map((p) => p.comm).join() === 'sleep'
              ? g
              : undefined;
          },
          n,
        );
        const mine = split.find((g) => !g.sandbox);
        assert.deepEqual(
          mine?.procs.map((p) => p.comm),
          ['sleep'],
          'the new namespace holds the sleep, its PID 1',
        );
        // Unwatch: the reader inside the sandbox ends (no python3 left there).
        sock.socket.emit('panel:unwatch');
        for (let i = 0; ; i++) {
          const out = await sock.run(t1, 'pgrep -x python3 || echo none-left');
          if (out.includes('none-left')) break;
          assert.ok(i < 100, `the panel reader is still running: ${out}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        // Refused: a step with no panels, and a bad payload.
        sock.socket.emit('panel:watch', { step: 'nope' });
        sock.socket.emit('panel:watch', { step: 5 } as unknown as { step: string });
        for (let i = 0; sock.errors.length < 2 && i < 200; i++)
          await new Promise((r) => setTimeout(r, 25));
        assert.deepEqual(
          sock.errors.map((e) => [e.code, e.event]),
          [
            ['unknown-step', 'panel:watch'],
            ['bad-request', 'panel:watch'],
          ],
        );
      } finally {
        await end();
      }
    },
  );

  sysTest(
    'cgroup CPU, overlay and capabilities panels read what the kernel says',
    SYSTEM_NEEDS,
    async () => {
      // cg-cpu-quota: a throttled loop in lab.
      {
        const { sock, t1, updates, end } = await labSocket('cg-cpu-quota');
        try {
          const C =
            '$( [ -e /sys/fs/cgroup/cgroup.controllers ] && echo /sys/fs/cgroup || echo /sys/fs/cgroup/cpu )';
          await sock.run(
            t1,
            `C=${C}; mkdir $C/lab; if [ -e $C/lab/cpu.max ]; then echo "50000 100000" > $C/lab/cpu.max; else echo 50000 > $C/lab/cpu.cfs_quota_us; fi; ` +
              `bash -c 'while :; do :; done' & echo $! > $C/lab/cgroup.procs`,
          );
          sock.socket.emit('panel:watch', { step: 'watch-throttle' });
          const cpu = await nextUpdate(updates, (u) => {
            const p = u.panels[0] as CgroupCpuPanel | undefined;
            return p?.exists && typeof p.pct === 'number' && (p.throttled ?? 0) > 0 ? p : undefined;
          });
          assert.equal(cpu.quotaPct, 50);
          assert.ok(
            (cpu.pct ?? 0) > 10 && (cpu.pct ?? 0) < 80,
            `a throttled loop near 50%: ${cpu.pct}`,
          );
          await sock.run(t1, `kill %1`);
        } finally {
          await end();
        }
      }
      // ovl-basics: a delete in merged is a whiteout in upper.
      {
        const { sock, t1, updates, end } = await labSocket('ovl-basics');
        try {
          await sock.run(
            t1,
            'mount -t overlay overlay -o userxattr,lowerdir=/lab/ovl/lower,upperdir=/lab/ovl/upper,workdir=/lab/ovl/work /lab/ovl/merged && rm /lab/ovl/merged/b.txt && echo x >> /lab/ovl/merged/a.txt',
          );
          sock.socket.emit('panel:watch', { step: 'whiteout' });
          const ovl = await nextUpdate(updates, (u) => {
            const p = u.panels[0] as OverlayPanel | undefined;
            return p?.mounted && p.layers.upper?.some((e) => e.type === 'whiteout') ? p : undefined;
          });
          assert.deepEqual(ovl.layers.upper?.map((e) => [e.path, e.type, !!e.copiedUp]).sort(), [
            ['a.txt', 'file', true],
            ['b.txt', 'whiteout', false],
          ]);
          assert.ok(
            !ovl.layers.merged?.some((e) => e.path === 'b.txt'),
            'b.txt is gone from merged',
          );
        } finally {
          await end();
        }
      }
      // cap-setcap-ping: the real ping's file capability, decoded.
      {
        const { sock, updates, end } = await labSocket('cap-setcap-ping');
        try {
          sock.socket.emit('panel:watch', { step: 'setcap' });
          const caps = await nextUpdate(
            updates,
            (u) => u.panels[0] as CapabilitiesPanel | undefined,
          );
          const ping = caps.files.find((f) => f.path === '/usr/bin/ping');
          assert.deepEqual(ping?.caps?.permitted, ['net_raw']);
          assert.equal(ping?.caps?.effective, true);
          assert.equal(caps.files.find((f) => f.path === '/home/learner/myping')?.exists, false);
        } finally {
          await end();
        }
      }
    },
  );

  sysTest(
    'namespaces: the hostname of each UTS namespace; a sample that did not change is not sent',
    SYSTEM_NEEDS,
    async () => {
      const { sock, t1, updates, end } = await labSocket('ns-uts-ipc');
      try {
        await sock.run(t1, "unshare --uts sh -c 'hostname inner; exec sleep 300' & sleep 0.2");
        sock.socket.emit('panel:watch', { step: 'private-hostname' });
        const uts = await nextUpdate(updates, (u) => {
          const t = (u.panels[0] as NamespacesPanel | undefined)?.types.find(
            (x) => x.type === 'uts',
          );
          // The namespace shows first with the hostname it was made with, on
          // a slow machine before `hostname inner` ran, and with `sh` before
          // its exec: wait for both, or the next sample is not the heartbeat.
          const inner = t?.groups.find((g) => !g.sandbox);
          return t?.groups.length === 2 &&
            inner?.hostname === 'inner' &&
            inner.procs.map((p) => p.comm).join() === 'sleep'
            ? t
            : undefined;
        });
        assert.deepEqual(
          uts.groups.map((g) => [g.sandbox, g.hostname]),
          [
            [true, 'lab'],
            [false, 'inner'],
          ],
        );
        // Nothing changes now: the next update is the heartbeat, about 5 s later.
        const n = updates.length;
        await nextUpdate(updates, (u) => u, n);
        const gap = (updates[n]?.t ?? 0) - (updates[n - 1]?.t ?? 0);
        assert.ok(gap >= 4, `an unchanged sample was sent ${gap.toFixed(2)} s after the last`);
        assert.deepEqual(updates[n]?.panels, updates[n - 1]?.panels);
      } finally {
        await end();
      }
    },
  );

  sysTest(
    'mounts: peer groups and slaves per mount namespace, a pivoted root, odd mount point names',
    SYSTEM_NEEDS,
    async () => {
      {
        const { sock, t1, updates, end } = await labSocket('ns-mount-propagation');
        try {
          await sock.run(
            t1,
            "mount --make-shared /lab/prop; mkdir '/lab/prop/x y'; " +
              "unshare --mount --propagation unchanged sh -c 'mount --make-slave /lab/prop && exec sleep 300' & " +
              'for i in $(seq 100); do grep -q master: /proc/$!/mountinfo && break; sleep 0.1; done; ' +
              "mount -t tmpfs fromsandbox /lab/prop/c && mount -t tmpfs odd '/lab/prop/x y'",
          );
          sock.socket.emit('panel:watch', { step: 'slave' });
          const mnt = await nextUpdate(updates, (u) => {
            const p = u.panels[0] as MountsPanel | undefined;
            return p?.namespaces.length === 2 &&
              p.namespaces.every((ns) => ns.mounts.some((m) => m.target === '/lab/prop/x y'))
              ? p
              : undefined;
          });
          assert.equal(mnt.under, '/lab/prop');
          const [own, slave] = mnt.namespaces;
          assert.equal(own?.sandbox, true);
          assert.equal(slave?.sandbox, false);
          const tag = (ns: typeof own, target: string) =>
            ns?.mounts.find((m) => m.target === target)?.tags ?? [];
          const group = tag(own, '/lab/prop').find((t) => t.startsWith('shared:'));
          assert.ok(group, `the sandbox's /lab/prop is shared: ${JSON.stringify(own?.mounts)}`);
          assert.deepEqual(tag(slave, '/lab/prop'), [`master:${group.slice(7)}`]);
          // c arrived in the slave from the sandbox: a slave of the sandbox's c.
          const c = tag(own, '/lab/prop/c').find((t) => t.startsWith('shared:'));
          assert.deepEqual(tag(slave, '/lab/prop/c'), [`master:${c?.slice(7)}`]);
          assert.deepEqual(
            slave?.procs.map((p) => [p.comm, p.term]),
            [['sleep', 'T1']],
            'the slave namespace holds the sleep, started from T1',
          );
          assert.equal(own?.mounts.find((m) => m.target === '/lab/prop/x y')?.fstype, 'tmpfs');
          assert.ok(
            own?.mounts.every((m) => m.target === '/lab/prop' || m.target.startsWith('/lab/prop/')),
            'only mounts under /lab/prop',
          );
        } finally {
          await end();
        }
      }
      {
        const { sock, t1, updates, end } = await labSocket('rootfs-chroot-pivot');
        try {
          await sock.run(
            t1,
            'mkdir -p /lab/rootfs; tar -C /lab/rootfs -xf /opt/lab/rootfs.tar; ' +
              `unshare --mount --pid --fork sh -c 'mount --bind /lab/rootfs /lab/rootfs && cd /lab/rootfs && touch dev/null && mount --bind /dev/null dev/null && mkdir -p .oldroot && pivot_root . .oldroot && exec /bin/sh -c "mount -t proc proc /proc; umount -l /.oldroot; exec sleep 300"' >/dev/null 2>&1 & true`,
          );
          sock.socket.emit('panel:watch', { step: 'pivot-root' });
          const mnt = await nextUpdate(updates, (u) => {
            const p = u.panels[0] as MountsPanel | undefined;
            const other = p?.namespaces.find((ns) => !ns.sandbox);
            return other &&
              !other.mounts.some((m) => m.target === '/.oldroot') &&
              other.procs.some((x) => x.comm === 'sleep')
              ? p
              : undefined;
          });
          const own = mnt.namespaces.find((ns) => ns.sandbox);
          const pivoted = mnt.namespaces.find((ns) => !ns.sandbox);
          assert.deepEqual(
            pivoted?.mounts.map((m) => [m.target, m.fstype]),
            [
              ['/', 'ext4'],
              ['/dev/null', 'devtmpfs'],
              ['/proc', 'proc'],
            ],
            'the pivoted namespace sees its new root, /dev/null and its /proc only',
          );
          assert.ok(
            own?.mounts.some((m) => m.target === '/lab') && (own?.folded ?? 0) > 0,
            "the sandbox's own table: /lab listed, the masks below /proc and /sys counted",
          );
        } finally {
          await end();
        }
      }
    },
  );
});

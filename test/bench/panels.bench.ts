/**
 * npm run bench:panels - what live kernel-state panels cost and how fresh
 * they are: per panel kind, the CPU the reader inside the sandbox uses while
 * one student watches (percent of one core, over SECS seconds), and, for the
 * namespaces panel, the time from a command finishing in the student's
 * terminal (`unshare --pid --fork ...`) to the first update that shows its
 * new namespace. Figures, not assertions.
 *
 *   node dist/test/bench/panels.bench.js [--secs 30] [--runs 10]
 */
import * as fs from 'node:fs';
import type { LabSession, NamespacesPanel, PanelUpdate } from '../../server/protocol/index';
import { startServer } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { TermClient } from '../helpers/term-client';

const argAt = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const SECS = Number(argAt('secs') ?? 30);
const RUNS = Number(argAt('runs') ?? 10);
const HZ = 100;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

/** Host pids of running panel readers (their source is on their command line). */
function readers(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.startsWith('python3\0-u\0-c\0') && cmd.includes('live kernel-state panels'))
        out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function ticks(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(') ') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

async function open(url: string, lab: string) {
  const student = new CookieClient(url);
  const ls = (await student.ok('POST', `/api/labs/${lab}/session`)) as unknown as LabSession;
  const sock = await TermClient.connect(url, { session: ls.session, token: ls.token });
  const t1 = ls.terminals[0]?.term as string;
  await sock.open({ term: t1, cols: 120, rows: 40 });
  const updates: { at: number; u: PanelUpdate }[] = [];
  sock.socket.on('panel:data', (u) => updates.push({ at: Date.now(), u }));
  return {
    sock,
    t1,
    updates,
    end: async () => {
      sock.close();
      await student.call('DELETE', `/api/labs/${lab}/session`);
    },
  };
}

async function cpuOf(url: string, lab: string, step: string, prepare: string): Promise<number> {
  const s = await open(url, lab);
  try {
    if (prepare) await s.sock.run(s.t1, prepare);
    const before = new Set(readers());
    s.sock.socket.emit('panel:watch', { step });
    let pid: number | undefined;
    for (let i = 0; i < 200 && !pid; i++) {
      pid = readers().find((p) => !before.has(p));
      if (!pid) await new Promise((r) => setTimeout(r, 50));
    }
    if (!pid) throw new Error(`no panel reader started for ${lab}/${step}`);
    // After its start-up (python's imports), the steady cost.
    await new Promise((r) => setTimeout(r, 2000));
    const a = ticks(pid);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, SECS * 1000));
    const used = (ticks(pid) - a) / HZ;
    return (used / ((Date.now() - t0) / 1000)) * 100;
  } finally {
    await s.end();
  }
}

async function main(): Promise<void> {
  const srv = await startServer();
  try {
    const rows: [string, string][] = [];
    const lat: number[] = [];
    {
      const s = await open(srv.url, 'ns-pid');
      try {
        s.sock.socket.emit('panel:watch', { step: 'mount-proc' });
        const groups = (u: PanelUpdate) =>
          (u.panels[0] as NamespacesPanel).types.find((t) => t.type === 'pid')?.groups.length ?? 0;
        while (!s.updates.length) await new Promise((r) => setTimeout(r, 20));
        for (let i = 0; i < RUNS; i++) {
          const have = groups((s.updates.at(-1) as { u: PanelUpdate }).u);
          await s.sock.run(s.t1, 'unshare --pid --fork sleep 120 >/dev/null 2>&1 & true');
          const t0 = Date.now();
          let seen: number | undefined;
          while (seen === undefined) {
            seen = s.updates.find((x) => x.at >= t0 - 600 && groups(x.u) > have)?.at;
            if (seen === undefined) await new Promise((r) => setTimeout(r, 10));
          }
          lat.push(Math.max(0, seen - t0));
        }
      } finally {
        await s.end();
      }
    }
    rows.push([
      'namespaces: command done → update showing it',
      `p50 ${pct(lat, 50)} ms, max ${Math.max(...lat)} ms (${RUNS} runs)`,
    ]);
    const cost: [string, string, string, string][] = [
      [
        'namespaces (uts and ipc, hostnames; a fresh lab sandbox)',
        'ns-uts-ipc',
        'private-hostname',
        '',
      ],
      ['namespaces (all 7 types, 3 shells)', 'container-capstone', 'launch', ''],
      [
        'cgroup-cpu (a throttled loop in lab)',
        'cg-cpu-quota',
        'watch-throttle',
        "C=$( [ -e /sys/fs/cgroup/cgroup.controllers ] && echo /sys/fs/cgroup || echo /sys/fs/cgroup/cpu ); mkdir $C/lab; if [ -e $C/lab/cpu.max ]; then echo '50000 100000' > $C/lab/cpu.max; else echo 50000 > $C/lab/cpu.cfs_quota_us; fi; bash -c 'while :; do :; done' & echo $! > $C/lab/cgroup.procs",
      ],
      [
        'overlay (three trees)',
        'ovl-basics',
        'whiteout',
        'mount -t overlay overlay -o userxattr,lowerdir=/lab/ovl/lower,upperdir=/lab/ovl/upper,workdir=/lab/ovl/work /lab/ovl/merged',
      ],
      ['capabilities (two files)', 'cap-setcap-ping', 'setcap', ''],
      [
        'mounts (two mount namespaces, /lab/prop)',
        'ns-mount-propagation',
        'slave',
        "mount --make-shared /lab/prop; unshare --mount --propagation unchanged sh -c 'mount --make-slave /lab/prop; exec sleep 300' & sleep 0.3; mount -t tmpfs c /lab/prop/c",
      ],
      ['mounts (the whole table of the sandbox)', 'rootfs-chroot-pivot', 'pivot-root', ''],
    ];
    for (const [name, lab, step, prep] of cost) {
      const c = await cpuOf(srv.url, lab, step, prep);
      rows.push([`${name}: reader CPU`, `${c.toFixed(2)} % of one core`]);
      process.stderr.write(`${name}: ${c.toFixed(2)} %\n`);
    }
    process.stdout.write(`Live panels, one watching student, ${SECS} s per kind\n\n`);
    process.stdout.write('| what | figure |\n| --- | --- |\n');
    for (const [a, b] of rows) process.stdout.write(`| ${a} | ${b} |\n`);
  } finally {
    await srv.stop();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

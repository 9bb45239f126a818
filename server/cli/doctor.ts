/**
 * `underlay doctor`: what this host has and lacks for sandboxes, each with
 * the fix. Exit 0 when sandboxes can run (warnings allowed), 1 otherwise.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { loadConfig } from '../config';
import {
  detectCgroupMode,
  dirtyBoundSupported,
  diskIoSupport,
  FILE_MAX_UNBOUNDED,
  fileMaxNeeded,
  findImage,
  loopControlStatus,
  mke2fsPath,
  nativeStatus,
  V1Driver,
  V2Driver,
} from '../sandbox/index';

export type Status = 'ok' | 'warn' | 'fail';
export interface Finding {
  check: string;
  status: Status;
  detail: string;
  fix?: string;
}

function kernelAtLeast(major: number, minor: number, release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return false;
  const [maj, min] = [Number(m[1]), Number(m[2])];
  return maj > major || (maj === major && min >= minor);
}

function readNum(p: string): number | undefined {
  try {
    return Number(fs.readFileSync(p, 'utf8').trim());
  } catch {
    return undefined;
  }
}

/**
 * The kernel's preemption model: `preempt=` on the command line where the
 * kernel allows choosing (PREEMPT_DYNAMIC), else the built-in one; undefined
 * when no kernel config is readable.
 */
export function preemptionModel(kernelConfig: string, cmdline: string): string | undefined {
  if (!kernelConfig) return undefined;
  const on = (k: string) => new RegExp(`^CONFIG_${k}=y$`, 'm').test(kernelConfig);
  const chosen = /(?:^|\s)preempt=(none|voluntary|full|lazy)(?:\s|$)/.exec(cmdline)?.[1];
  if (chosen && on('PREEMPT_DYNAMIC')) return chosen;
  if (on('PREEMPT_RT')) return 'rt';
  if (on('PREEMPT_LAZY')) return 'lazy';
  if (on('PREEMPT')) return 'full';
  if (on('PREEMPT_VOLUNTARY')) return 'voluntary';
  if (on('PREEMPT_NONE')) return 'none';
  return undefined;
}

/** /boot/config-<release> or /proc/config.gz, as text ('' if neither). */
function kernelConfigText(release: string): string {
  const boot = readText(`/boot/config-${release}`);
  if (boot) return boot;
  try {
    return zlib.gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
  } catch {
    return '';
  }
}

/** Host facts that can be overridden to show what doctor says on another kernel. */
export interface HostFacts {
  release: string;
  /** The kernel's build config and command line (default: read from the host). */
  kernelConfig?: string;
  cmdline?: string;
  /**
   * How long one cgroup migration took after a quiet spell (ms; see
   * measureMigration), null if it could not be measured; absent: no finding.
   */
  migrationMs?: number | null;
  /** kernel.yama.ptrace_scope (default: read from the host; undefined: no Yama). */
  ptraceScope?: number;
  /** Whether this process has CAP_SYS_PTRACE (default: its CapEff). */
  capSysPtrace?: boolean;
  /** /etc/subuid and /etc/subgid contents (default: read from the host). */
  subuid?: string;
  subgid?: string;
}

const readText = (p: string) => {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};

/** Entries of /etc/subuid or /etc/subgid ("name:start:count") that overlap [lo, hi). */
export function overlappingSubids(text: string, lo: number, hi: number): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => {
      const [, start, count] = l.split(':');
      const s = Number(start);
      const n = Number(count);
      return Number.isFinite(s) && Number.isFinite(n) && n > 0 && s < hi && s + n > lo;
    });
}

export function diagnose(facts: HostFacts = { release: os.release() }): Finding[] {
  const out: Finding[] = [];
  const atLeast = (a: number, b: number) => kernelAtLeast(a, b, facts.release);
  const add = (check: string, status: Status, detail: string, fix?: string) =>
    out.push({ check, status, detail, ...(fix ? { fix } : {}) });

  add(
    'root',
    process.getuid?.() === 0 ? 'ok' : 'fail',
    `uid ${process.getuid?.()}`,
    'run as root (sudo), or in the Vagrant VM',
  );

  const rel = facts.release;
  add(
    'kernel',
    atLeast(5, 11) ? 'ok' : 'fail',
    rel,
    'Linux >= 5.11 is needed (overlay in user namespaces); >= 5.19 for idmapped mounts',
  );
  add(
    'setns with pidfd',
    atLeast(5, 8) ? 'ok' : 'fail',
    atLeast(5, 8) ? 'kernel >= 5.8' : `kernel ${rel} < 5.8`,
    'upgrade the kernel (joining terminals uses setns(pidfd))',
  );
  add(
    'idmapped mounts',
    // A fallback exists (a shifted copy of the image per uid range), so this
    // is a warning: sandboxes run, only slower to create the first time.
    atLeast(5, 19) ? 'ok' : 'warn',
    atLeast(5, 19)
      ? 'kernel >= 5.19: the base image is shared through one idmapped mount per session'
      : `kernel ${rel} < 5.19: each uid range gets a shifted copy of the image instead (slower first start, more disk)`,
    'upgrade to Linux >= 5.19; see docs/sandbox.md "Without idmapped mounts" for the fallback',
  );

  // A terminal's join helper copies the console socket from the server with
  // pidfd_getfd (docs/terminals.md#a-pty-of-the-sandboxs-own), a ptrace
  // attach check: Yama's scope 3 refuses it to everyone, root included.
  const scope =
    'ptraceScope' in facts ? facts.ptraceScope : readNum('/proc/sys/kernel/yama/ptrace_scope');
  // Scopes 1 and 2 let a child attach to its parent only with CAP_SYS_PTRACE.
  const capEff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readText('/proc/self/status'))?.[1];
  const ptraceCap =
    facts.capSysPtrace ?? (capEff !== undefined && (BigInt(`0x${capEff}`) >> 19n) & 1n) === 1n;
  const refused =
    scope === 3
      ? 'kernel.yama.ptrace_scope=3: pidfd_getfd is refused to everyone'
      : (scope === 1 || scope === 2) && !ptraceCap
        ? `kernel.yama.ptrace_scope=${scope} and no CAP_SYS_PTRACE: pidfd_getfd on the server is refused`
        : undefined;
  add(
    'terminal console socket',
    refused ? 'fail' : 'ok',
    refused
      ? `${refused}, so no terminal can start`
      : `pidfd_getfd available (kernel.yama.ptrace_scope=${scope ?? 'none'})`,
    scope === 3
      ? 'set kernel.yama.ptrace_scope to 2 or lower (3 can only be undone by a reboot)'
      : 'run underlay with CAP_SYS_PTRACE (a root service keeps it unless its unit drops it)',
  );

  // Debian's adduser hands out subordinate id ranges 100000:65536, 165536:65536, ...:
  // exactly the session ranges. A host user owning one (podman unshare) could
  // act as a session's host uid and reach its files.
  const { uidBase, maxSessions } = loadConfig();
  const hi = uidBase + 65536 * maxSessions;
  const clash = [
    ...overlappingSubids(facts.subuid ?? readText('/etc/subuid'), uidBase, hi),
    ...overlappingSubids(facts.subgid ?? readText('/etc/subgid'), uidBase, hi),
  ];
  add(
    'session id ranges',
    clash.length ? 'fail' : 'ok',
    clash.length
      ? `host users own subordinate ids inside the session ranges ${uidBase}-${hi - 1}: ${clash.join(', ')}`
      : `${uidBase}-${hi - 1}, used by no /etc/subuid or /etc/subgid entry`,
    'set UNDERLAY_UID_BASE (100000 + 65536*n) so that the session ranges miss them, or remove those entries',
  );

  const maxUserns = readNum('/proc/sys/user/max_user_namespaces');
  add(
    'user namespaces',
    (maxUserns ?? 0) > 0 ? 'ok' : 'fail',
    `user.max_user_namespaces=${maxUserns ?? '?'}`,
    'sysctl -w user.max_user_namespaces=63000',
  );

  // One count for the host: below what memory can hold, sandboxes could fill it (host-files.ts).
  const fileMax = readNum('/proc/sys/fs/file-max');
  const memKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(readText('/proc/meminfo'))?.[1] ?? 0);
  const fileMaxLow = fileMax !== undefined && fileMax < fileMaxNeeded(memKiB * 1024);
  const nokmem = /(^|\s)cgroup\.memory=[^\s]*nokmem/.test(readText('/proc/cmdline'));
  const keep = loadConfig().keepFileMax;
  add(
    'open-file table',
    fileMaxLow ? 'warn' : 'ok',
    !fileMaxLow
      ? `fs.file-max=${readText('/proc/sys/fs/file-max').trim() || '?'}`
      : nokmem
        ? `fs.file-max=${fileMax}: sandboxes could fill it, and this kernel (cgroup.memory=nokmem) charges open files to no sandbox, so it is the only bound; underlay leaves it`
        : keep
          ? `fs.file-max=${fileMax}: sandboxes could fill it (every other one then gets ENFILE); kept as it is (UNDERLAY_KEEP_FILE_MAX=1)`
          : `fs.file-max=${fileMax}: sandboxes could fill it (every other one then gets ENFILE); underlay raises it when it starts sandboxes, as systemd does at boot`,
    !fileMaxLow
      ? undefined
      : nokmem
        ? "boot without cgroup.memory=nokmem, so open files count against each sandbox's memory"
        : `sysctl -w fs.file-max=${FILE_MAX_UNBOUNDED}`,
  );

  const fsTypes = fs.readFileSync('/proc/filesystems', 'utf8');
  add(
    'overlayfs',
    /\boverlay\b/.test(fsTypes) ? 'ok' : 'fail',
    /\boverlay\b/.test(fsTypes) ? 'available' : 'not in /proc/filesystems',
    'modprobe overlay',
  );

  let mode: 'v1' | 'v2' | undefined;
  try {
    mode = detectCgroupMode();
  } catch {
    add('cgroups', 'fail', '/sys/fs/cgroup is not mounted', 'mount cgroup2 at /sys/fs/cgroup');
  }
  if (mode === 'v1') {
    const d = new V1Driver();
    const ctrls = d.controllers();
    const missing = ['cpu', 'memory', 'pids', 'freezer'].filter((c) => !ctrls.includes(c));
    add(
      'cgroups',
      missing.length ? 'warn' : 'ok',
      `v1 (hybrid/legacy); delegated controllers: ${ctrls.join(' ')}${missing.length ? `; missing: ${missing.join(' ')}` : ''}`,
      missing.length
        ? 'enable the missing v1 controllers (kernel cmdline / mount options)'
        : undefined,
    );
  } else if (mode === 'v2') {
    try {
      const d = new V2Driver();
      const ctrls = d.controllers();
      const missing = ['cpu', 'memory', 'pids'].filter((c) => !ctrls.includes(c));
      add(
        'cgroups',
        missing.length ? 'warn' : 'ok',
        `v2 (unified); controllers available to us: ${ctrls.join(' ') || 'none'}`,
        missing.length
          ? `controllers ${missing.join(' ')} are not delegated to this process's cgroup: run underlay as a systemd unit with Delegate=yes (see Vagrantfile)`
          : undefined,
      );
      // v2 lets a cgroup enable controllers for children only while it holds
      // no process: where we run decides how sessions get theirs.
      const dl = d.delegation();
      if (dl.ready || dl.others === 0) {
        add('cgroup delegation', 'ok', `${dl.own}${dl.ready ? '' : ': we move into a leaf of it'}`);
      } else if (dl.systemd) {
        add(
          'cgroup delegation',
          'ok',
          `${dl.own} is shared with ${dl.others} other process(es): each underlay process asks systemd for a scope of its own (Delegate=yes)`,
        );
      } else {
        add(
          'cgroup delegation',
          'fail',
          `${dl.own} is shared with ${dl.others} other process(es) and there is no systemd to ask for a scope: sandboxes cannot get controllers`,
          'start underlay alone in a cgroup of its own (a service manager unit with delegation), or from the root cgroup',
        );
      }
      const hasKill = fs.existsSync('/sys/fs/cgroup/cgroup.kill') || atLeast(5, 14);
      add(
        'cgroup.kill',
        hasKill ? 'ok' : 'warn',
        hasKill ? 'kernel >= 5.14' : 'missing: teardown falls back to freeze + kill',
        'Linux >= 5.14',
      );
    } catch (err) {
      add('cgroups', 'fail', `v2: ${(err as Error).message}`);
    }
  }

  if (facts.migrationMs !== undefined && mode) {
    // Every cgroup.procs write takes cgroup_threadgroup_rwsem for writing; the
    // first after a quiet spell waits an RCU grace period unless the kernel
    // favours dynamic cgroup changes (docs/sandbox.md#cgroup-migrations).
    const ms = facts.migrationMs;
    const slow = ms !== null && ms > 2;
    add(
      'cgroup migration',
      slow ? 'warn' : 'ok',
      ms === null
        ? 'not measured (could not make a probe cgroup)'
        : `${ms.toFixed(2)} ms after a quiet spell${slow ? ': favordynmods is off, so each one waits an RCU grace period' : ''}`,
      slow
        ? mode === 'v1'
          ? 'every sandbox start, terminal and check waits for one: boot with cgroup_favordynmods=true (Linux >= 6.7) or a kernel built with CONFIG_CGROUP_FAVOR_DYNMODS'
          : 'sandbox starts do not migrate (they are born in their cgroups) but terminals and checks do: mount -o remount,favordynmods /sys/fs/cgroup, or boot with cgroup_favordynmods=true (Linux >= 6.7)'
        : undefined,
    );
  }

  const nat = nativeStatus();
  add('native module', nat.ok ? 'ok' : 'fail', nat.detail, 'npm run build:native');

  // Each session's files live in an ext4 image of its own (sandbox/disk.ts).
  const mke2fs = mke2fsPath();
  const loop = loopControlStatus();
  add(
    'session disks (ext4 on loop)',
    mke2fs && loop.ok ? 'ok' : 'fail',
    `${mke2fs ?? 'mke2fs: not found'}, ${loop.detail}`,
    mke2fs ? 'modprobe loop' : 'apt-get install e2fsprogs',
  );

  if (mode) {
    // docs/sandbox.md#disk-bandwidth: unbounded, one student's disk filler
    // takes the host's disk, and the CPU its writeback costs, from everyone.
    let ioController = false;
    try {
      ioController = mode === 'v2' && new V2Driver().controllers().includes('io');
    } catch {
      // reported by the cgroups check
    }
    const io = diskIoSupport(mode, { ioController, dirtyBound: dirtyBoundSupported() });
    add(
      'disk bandwidth',
      io.ok ? 'ok' : 'warn',
      io.detail,
      mode === 'v2'
        ? 'delegate the io controller (systemd: Delegate=yes)'
        : 'mount the blkio hierarchy at its root, on Linux >= 6.2',
    );
  }

  const img = findImage(loadConfig().imagesDir);
  add(
    'base image',
    img ? 'ok' : 'fail',
    img ? `${img.id} (${img.suite}/${img.arch}, built ${img.builtAt})` : 'not built',
    'underlay rootfs build',
  );

  const dmesg = readNum('/proc/sys/kernel/dmesg_restrict');
  add(
    'kernel.dmesg_restrict',
    dmesg === 1 ? 'ok' : 'warn',
    String(dmesg),
    'sysctl -w kernel.dmesg_restrict=1',
  );
  const preempt = preemptionModel(
    facts.kernelConfig ?? kernelConfigText(facts.release),
    facts.cmdline ?? readText('/proc/cmdline'),
  );
  add(
    'kernel preemption',
    preempt === 'none' ? 'warn' : 'ok',
    preempt ?? 'unknown (no kernel config found)',
    // On such a kernel a task in a long kernel path keeps its CPU: a student
    // filling a disk or flooding a terminal delays every keystroke's echo by
    // up to 0.1 s (docs/benchmarks.md "What the noisy five cost").
    preempt === 'none'
      ? "add preempt=voluntary (or preempt=full) to the kernel command line, or use a kernel built with voluntary preemption (Debian's is)"
      : undefined,
  );
  const bpf = readNum('/proc/sys/kernel/unprivileged_bpf_disabled');
  add(
    'kernel.unprivileged_bpf_disabled',
    (bpf ?? 0) >= 1 ? 'ok' : 'warn',
    String(bpf),
    'sysctl -w kernel.unprivileged_bpf_disabled=2',
  );
  return out;
}

/**
 * Times one migration: a child cgroup of our own (pids on v1), a `sleep`
 * of ours moved into it after 150 ms in which this process migrates
 * nothing, then both removed. Null when the host does not let us.
 */
export async function measureMigration(): Promise<number | null> {
  let dir: string;
  try {
    const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n');
    if (detectCgroupMode() === 'v2') {
      dir = path.join('/sys/fs/cgroup', lines.find((l) => l.startsWith('0::'))!.slice(3));
    } else {
      const own = lines.find((l) => l.split(':')[1] === 'pids')!.split(':')[2]!;
      dir = path.join('/sys/fs/cgroup/pids', own);
    }
  } catch {
    return null;
  }
  const probe = path.join(dir, `underlay-doctor-${process.pid}`);
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  // 'close' comes after 'error' too (no 'exit' when the spawn fails).
  const exited = new Promise((resolve) => child.once('close', resolve));
  try {
    await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
    fs.mkdirSync(probe);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const t0 = process.hrtime.bigint();
    fs.writeFileSync(path.join(probe, 'cgroup.procs'), String(child.pid));
    return Number(process.hrtime.bigint() - t0) / 1e6;
  } catch {
    return null;
  } finally {
    child.kill('SIGKILL');
    await exited;
    try {
      fs.rmdirSync(probe);
    } catch {
      // never made
    }
  }
}

export async function runDoctor(opts: { json: boolean }): Promise<number> {
  const findings = diagnose({ release: os.release(), migrationMs: await measureMigration() });
  const failed = findings.some((f) => f.status === 'fail');
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ok: !failed, findings }, null, 2) + '\n');
  } else {
    for (const f of findings) {
      const mark = { ok: ' ok ', warn: 'warn', fail: 'FAIL' }[f.status];
      process.stdout.write(`[${mark}] ${f.check.padEnd(34)} ${f.detail}\n`);
      if (f.status !== 'ok' && f.fix) process.stdout.write(`       fix: ${f.fix}\n`);
    }
    process.stdout.write(
      failed ? '\nthis host cannot run sandboxes yet\n' : '\nthis host can run sandboxes\n',
    );
  }
  return failed ? 1 : 0;
}

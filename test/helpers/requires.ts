/**
 * Privileged tests declare what they need. Locally a missing requirement
 * skips with the reason; in CI (CI=true or UNDERLAY_SYSTEM_MUST_RUN=1) it
 * FAILS with the reason, so a broken machine can never show up as green
 * (bubblewrap's BWRAP_MUST_WORK, runc's `requires`).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { test, type TestContext } from 'node:test';
import { timeScale } from '../../server/config';
import { findImage, hostDistro, hostMirror } from '../../server/sandbox/images';
import { testConfig } from './env';

export type Need =
  | 'root'
  | 'userns'
  | 'overlay'
  | 'idmap'
  | 'image'
  | 'cgroup-v1'
  | 'cgroup-v2-only'
  | 'cgroup-v2-hierarchy'
  | 'apt-network'
  | 'x86_64'
  | 'any-kernel';

export function mustRun(): boolean {
  return process.env.CI === 'true' || process.env.UNDERLAY_SYSTEM_MUST_RUN === '1';
}

function kernelAtLeast(a: number, b: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(os.release());
  return !!m && (Number(m[1]) > a || (Number(m[1]) === a && Number(m[2]) >= b));
}

function missing(need: Need): string | undefined {
  switch (need) {
    case 'root':
      return process.getuid?.() === 0 ? undefined : 'needs root';
    case 'userns':
      return Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) > 0
        ? undefined
        : 'user namespaces disabled';
    case 'overlay':
      return /\boverlay\b/.test(fs.readFileSync('/proc/filesystems', 'utf8'))
        ? undefined
        : 'no overlayfs';
    case 'idmap':
      return kernelAtLeast(5, 19) ? undefined : `kernel ${os.release()} < 5.19 (idmapped mounts)`;
    case 'image':
      return findImage(testConfig().imagesDir)
        ? undefined
        : 'no base image: run `underlay rootfs build`';
    case 'cgroup-v1':
      return fs.existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us') ||
        fs.existsSync('/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us')
        ? undefined
        : 'host is not cgroup v1/hybrid';
    case 'cgroup-v2-only':
      return fs.existsSync('/sys/fs/cgroup/cgroup.controllers')
        ? undefined
        : 'host is not cgroup v2-only';
    case 'cgroup-v2-hierarchy':
      return fs.existsSync('/sys/fs/cgroup/unified/cgroup.controllers') ||
        fs.existsSync('/sys/fs/cgroup/cgroup.controllers')
        ? undefined
        : 'no cgroup2 hierarchy mounted';
    case 'apt-network':
      return aptReachable();
    case 'x86_64':
      return os.arch() === 'x64' ? undefined : `${os.arch()} host (the fixture is x86_64 code)`;
    case 'any-kernel':
      return process.env.UNDERLAY_VM_TIER === '1'
        ? 'server and protocol logic no kernel, distro or init system changes: the host tier runs it'
        : undefined;
  }
}

/**
 * Needs that pick a variant rather than check the machine: a cgroup v1 test
 * does not apply on a v2-only host and vice versa; building an image needs
 * the apt mirror, which the VM tier's guest has no network to reach. Such a test is skipped as
 * not applicable even in CI; CI runs both kinds, the v1 ones on this host
 * (cgroup v1 hybrid) and the v2 ones in the VM tier (test/vm/, Debian 12).
 * 'any-kernel' marks a test of the server's own logic (replay, flow control,
 * auth, message validation) that needs a sandbox but whose outcome no kernel,
 * distro or init system changes: the VM tier (UNDERLAY_VM_TIER=1), where
 * every process costs ~100 ms, leaves it to the host tier, which always runs it.
 */
const VARIANTS: readonly Need[] = ['cgroup-v1', 'cgroup-v2-only', 'apt-network', 'any-kernel'];

let aptAnswer: string | undefined | null = null;
/** The host's Debian mirror answers (debootstrap needs it; the VM tier's guest has no network). */
function aptReachable(): string | undefined {
  if (aptAnswer !== null) return aptAnswer;
  let url = '';
  try {
    url = `${hostMirror(hostDistro().codename).replace(/\/$/, '')}/dists/${hostDistro().codename}/Release`;
  } catch (err) {
    return (aptAnswer = `no apt source: ${(err as Error).message}`);
  }
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      'fetch(process.argv[1], { method: "HEAD", signal: AbortSignal.timeout(5000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))',
      url,
    ],
    { timeout: 8000 },
  );
  return (aptAnswer =
    probe.status === 0 ? undefined : "no network: the host's apt mirror does not answer");
}

/** `test()` that skips (locally) or fails (CI) when a requirement is missing. */
export function sysTest(
  name: string,
  needs: Need[],
  fn: (t: TestContext) => Promise<void> | void,
  opts: { timeout?: number } = {},
): void {
  const why = needs.map(missing).filter(Boolean).join('; ');
  const variant = needs
    .filter((n) => VARIANTS.includes(n))
    .map(missing)
    .filter(Boolean);
  if (variant.length) {
    test(name, { skip: `not applicable: ${variant.join('; ')}` }, () => {});
  } else if (!why) {
    // A time limit here only stops a hung test; on a slow host (the VM tier's
    // emulated guest, UNDERLAY_TIME_SCALE 4) everything takes that much longer,
    // and a test that took 47 s there one day took over 60 the next.
    test(name, { timeout: (opts.timeout ?? 60_000) * timeScale() }, fn);
  } else if (mustRun()) {
    test(name, () => {
      throw new Error(`requirement missing on a machine where system tests must run: ${why}`);
    });
  } else {
    test(name, { skip: why }, () => {});
  }
}

export const SYSTEM_NEEDS: Need[] = ['root', 'userns', 'overlay', 'idmap', 'image'];

/**
 * A describe block's shared before() hook that failed: its error is kept and
 * re-raised inside each test (a failing before() alone would not name them).
 */
export function setupGuard(): { fail(err: unknown): void; ready(): void } {
  let error: unknown;
  return {
    fail: (err) => {
      error = err;
    },
    ready: () => {
      if (error) throw error;
    },
  };
}

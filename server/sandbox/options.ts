/**
 * What a caller may ask of a sandbox: creation options and limits, exec
 * options and results, and the environment every sandboxed command starts
 * with. Validation of requests lives here too, so the manager's create()
 * starts from a plan that is known to be possible.
 */
import { DEFAULT_LIMITS } from '../config';
import { RequestError } from '../util/errors';
import type { CgroupLimits } from './cgroups';

export interface Limits extends CgroupLimits {
  /** The root overlay's upper layer (the scratch tmpfs). */
  scratchBytes: number;
  scratchInodes: number;
  /** /tmp and /lab, each. */
  tmpBytes: number;
  tmpInodes: number;
  /** /dev/shm. */
  shmBytes: number;
  shmInodes: number;
  /** /run. */
  runBytes: number;
  runInodes: number;
}

type WritableSizes = Pick<
  Limits,
  | 'scratchBytes'
  | 'scratchInodes'
  | 'tmpBytes'
  | 'tmpInodes'
  | 'shmBytes'
  | 'shmInodes'
  | 'runBytes'
  | 'runInodes'
>;

const MiB = 1024 * 1024;
/**
 * Kernel memory one inode may cost the sandbox: an empty file, dir or
 * symlink measured 1.1-1.5 KiB on tmpfs here and 2.85-2.9 KiB through the
 * overlay root (an overlay inode and dentry on top of the upper tmpfs's);
 * long names and xattrs add more (tmpfs counts xattrs against nr_inodes
 * since Linux 6.6). All charged to the memory cgroup. Rounded up.
 */
export const INODE_COST = 3072;
/** One inode per 8 KiB of a mount's size: inodes then cost at most a quarter of the bytes. */
const BYTES_PER_INODE = 8192;
/** The tiny fixed mounts (/dev, /sys/fs/cgroup): their inodes come out of the headroom. */
export const FIXED_MOUNT_INODES = 256;

/**
 * The writable tmpfs sizes and inode counts for a memory limit. tmpfs pages
 * and inodes are charged to the sandbox's memory cgroup and, with no swap,
 * cannot be reclaimed: if the mounts together could hold more than the
 * limit, filling them (with data or with empty files) ends in an OOM kill of
 * every process instead of ENOSPC. So all of them together, data plus
 * inodes at INODE_COST, get the limit minus headroom for processes (see
 * headroom()), split half to the root's upper layer, a fifth each to /tmp
 * and /lab, the rest to /dev/shm and /run.
 */
export function writableSizes(memoryBytes: number, scratchBytes?: number): WritableSizes {
  const perByte = 1 + INODE_COST / BYTES_PER_INODE;
  const budget = Math.floor((memoryBytes - headroom(memoryBytes)) / perByte);
  // An explicit upper-layer size (--scratch) leaves the rest to the others,
  // in the same proportions; without one, the upper layer gets half.
  const rest = scratchBytes === undefined ? budget / 2 : budget - scratchBytes;
  const part = (f: number) => Math.max(MiB, Math.floor((rest * f) / MiB) * MiB);
  const tmpBytes = part(0.4);
  const shmBytes = part(0.16);
  const runBytes = part(0.04);
  // The upper layer gets what is left (half, or less where the 1 MiB minimums bite).
  const upper = scratchBytes ?? Math.max(MiB, budget - 2 * tmpBytes - shmBytes - runBytes);
  return {
    scratchBytes: upper,
    scratchInodes: inodesFor(upper),
    tmpBytes,
    tmpInodes: inodesFor(tmpBytes),
    shmBytes,
    shmInodes: inodesFor(shmBytes),
    runBytes,
    runInodes: inodesFor(runBytes),
  };
}

/** The inode count that goes with a mount's size. */
export function inodesFor(bytes: number): number {
  return Math.max(64, Math.floor(bytes / BYTES_PER_INODE));
}

/** Memory kept for processes: a quarter of the limit, at least 64 MiB (half, for tiny limits). */
function headroom(memoryBytes: number): number {
  return Math.max(Math.min(64 * MiB, Math.floor(memoryBytes / 2)), Math.floor(memoryBytes / 4));
}

/** What everything writable can pin when full: the data, and the inodes at INODE_COST. */
export function writableTotal(l: Limits): number {
  const bytes = l.scratchBytes + 2 * l.tmpBytes + l.shmBytes + l.runBytes;
  const inodes = l.scratchInodes + 2 * l.tmpInodes + l.shmInodes + l.runInodes;
  return bytes + inodes * INODE_COST;
}

export type OwnerKind = 'cli' | 'server' | 'detached';

export interface CreateOptions {
  hostname?: string;
  /** Extra packages: the sandbox runs on the image built with them (`rootfs build --labs`). */
  packages?: readonly string[];
  limits?: Partial<Limits>;
  ownerKind?: OwnerKind;
}

/** Who a command runs as inside the sandbox, and where. */
export interface JoinOptions {
  uid?: number;
  gid?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Apply the seccomp deny-list (default true; false exists for tests that prove it matters). */
  seccomp?: boolean;
  /** The cgroup.procs files to join instead of the session's (a terminal's own cgroup). */
  cgroupProcs?: string[];
  /**
   * Run with the trusted toolset and fresh /proc and cgroup mounts, in a
   * private mount namespace, as sandbox root (checks and hints:
   * docs/sandbox.md#trusted-checks). PATH holds only the toolset.
   */
  trusted?: boolean;
}

export interface ExecOptions extends JoinOptions {
  input?: string | Buffer;
  /** Kill the command after this long (default 10 s). */
  timeoutMs?: number;
  /** Keep at most this many bytes of stdout and of stderr (default 1 MiB). */
  maxBytes?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  truncated: boolean;
  ms: number;
}

export const SANDBOX_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  TERM: 'xterm-256color',
  LANG: 'C.UTF-8',
  SHELL: '/bin/bash',
  USER: 'root',
};

const HOSTNAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

/** The default limits overlaid with the requested ones; throws on impossible values. */
export function resolveLimits(requested: Partial<Limits> = {}): Limits {
  const memoryBytes = requested.memoryBytes ?? DEFAULT_LIMITS.memoryBytes;
  const l: Limits = {
    ...DEFAULT_LIMITS,
    ...(memoryBytes >= 16 * MiB ? writableSizes(memoryBytes, requested.scratchBytes) : {}),
    ...requested,
  } as Limits;
  // An explicit --scratch brings its own inode count.
  if (requested.scratchBytes !== undefined && requested.scratchInodes === undefined)
    l.scratchInodes = inodesFor(l.scratchBytes);
  const bad = (field: string, why: string) => {
    throw new RequestError('invalid', `impossible limit ${field}: ${why}`);
  };
  if (!Number.isFinite(l.memoryBytes) || l.memoryBytes < 16 * 1024 * 1024)
    bad('memory', 'at least 16M is needed to start a shell');
  if (l.memoryBytes > 64 * 1024 ** 3) bad('memory', 'more than 64G');
  if (!Number.isInteger(l.pids) || l.pids < 8)
    bad('pids', 'at least 8 (init, a shell and a command)');
  if (l.pids > 1_000_000) bad('pids', 'more than 1000000');
  if (!(l.cpus > 0) || l.cpus > 1024) bad('cpus', 'must be > 0 and <= 1024');
  if (!Number.isFinite(l.scratchBytes) || l.scratchBytes < 1024 * 1024)
    bad('scratch', 'at least 1M');
  if (!Number.isFinite(l.tmpBytes) || l.tmpBytes < 1024 * 1024) bad('tmp', 'at least 1M');
  const room = headroom(l.memoryBytes);
  if (writableTotal(l) > l.memoryBytes - room)
    bad(
      'scratch',
      `the writable space (${Math.round(writableTotal(l) / MiB)}M with its inodes: upper layer, /tmp, /lab, /dev/shm, /run) ` +
        `must stay below the memory limit minus ${Math.round(room / MiB)}M, or filling it OOM-kills the sandbox instead of ENOSPC; ` +
        'raise --memory or lower --scratch',
    );
  return l;
}

export function validateHostname(hostname: string): string {
  if (!HOSTNAME_RE.test(hostname)) {
    throw new RequestError(
      'invalid',
      `invalid hostname ${JSON.stringify(hostname)}: use letters, digits and '-', at most 63`,
    );
  }
  return hostname;
}

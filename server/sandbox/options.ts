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
  /**
   * The session disk (an ext4 image of its own, on disk, not in memory): the
   * root overlay's upper layer, /tmp and /lab share it. Full means ENOSPC.
   */
  scratchBytes: number;
  scratchInodes: number;
  /**
   * The session disk's bandwidth, bytes per second, reads and writes each,
   * and its I/O operations per second: one student's disk filler must not
   * take the host's disk and CPU from everyone (docs/sandbox.md#disk-bandwidth).
   */
  diskBps: number;
  diskIops: number;
  /** /dev/shm (tmpfs: charged to the memory limit). */
  shmBytes: number;
  shmInodes: number;
  /** /run (tmpfs: charged to the memory limit). */
  runBytes: number;
  runInodes: number;
}

type MemorySizes = Pick<Limits, 'shmBytes' | 'shmInodes' | 'runBytes' | 'runInodes'>;

const MiB = 1024 * 1024;
/**
 * Kernel memory one tmpfs inode may cost the sandbox: an empty file, dir or
 * symlink measured 1.1-1.5 KiB here; long names and xattrs add more (tmpfs
 * counts xattrs against nr_inodes since Linux 6.6). All charged to the
 * memory cgroup. Rounded up.
 */
export const INODE_COST = 3072;
/** One inode per 8 KiB of a tmpfs's size: inodes then cost at most a quarter of the bytes. */
const BYTES_PER_INODE = 8192;
/** One inode per 16 KiB of the session disk (ext4's default ratio). */
const DISK_BYTES_PER_INODE = 16384;
/** The tiny fixed mounts (/dev, /sys/fs/cgroup): their inodes come out of the headroom. */
export const FIXED_MOUNT_INODES = 256;

/**
 * The sizes of the two writable tmpfs mounts left, /dev/shm and /run, for a
 * memory limit. tmpfs pages and inodes are charged to the sandbox's memory
 * cgroup and, with no swap, cannot be reclaimed: if they could hold more
 * than the limit, filling them would end in an OOM kill of every process
 * instead of ENOSPC. So together, data plus inodes at INODE_COST, they get
 * a fifth of what is left after the headroom for processes, four to one.
 * (Everything else a student writes goes to the session disk, whose page
 * cache the kernel can write back and reclaim.)
 */
export function memorySizes(memoryBytes: number): MemorySizes {
  const perByte = 1 + INODE_COST / BYTES_PER_INODE;
  const budget = Math.floor((memoryBytes - headroom(memoryBytes)) / perByte / 5);
  const part = (f: number) => Math.max(MiB, Math.floor((budget * f) / MiB) * MiB);
  const shmBytes = part(0.8);
  const runBytes = part(0.2);
  return {
    shmBytes,
    shmInodes: inodesFor(shmBytes),
    runBytes,
    runInodes: inodesFor(runBytes),
  };
}

/** The inode count that goes with a tmpfs's size. */
export function inodesFor(bytes: number): number {
  return Math.max(64, Math.floor(bytes / BYTES_PER_INODE));
}

/** The inode count that goes with a session disk's size. */
export function diskInodesFor(bytes: number): number {
  return Math.max(1024, Math.floor(bytes / DISK_BYTES_PER_INODE));
}

/** Memory kept for processes: a quarter of the limit, at least 64 MiB (half, for tiny limits). */
function headroom(memoryBytes: number): number {
  return Math.max(Math.min(64 * MiB, Math.floor(memoryBytes / 2)), Math.floor(memoryBytes / 4));
}

/** What the tmpfs mounts can pin when full: the data, and the inodes at INODE_COST. */
export function memoryWritableTotal(l: Limits): number {
  return l.shmBytes + l.runBytes + (l.shmInodes + l.runInodes) * INODE_COST;
}

export type OwnerKind = 'cli' | 'server' | 'detached';

export interface CreateOptions {
  hostname?: string;
  /** Extra packages: the sandbox runs on the image built with them (`rootfs build --labs`). */
  packages?: readonly string[];
  limits?: Partial<Limits>;
  ownerKind?: OwnerKind;
  /**
   * Keep the session disk after this sandbox, for the next one made with
   * the same owner and name (a student's lab): their files survive a lost
   * sandbox, a parked session and a host reboot (docs/sandbox.md#kept-disks).
   */
  keepDisk?: { owner: string; name: string };
  /**
   * Short of host disk room or id ranges, parked disks may be dropped to make
   * room (default). false: refused instead - for a sandbox nobody asked for
   * yet (a warm seat), which must never cost a student their files.
   */
  dropParked?: boolean;
}

/** Who a command runs as inside the sandbox, and where. */
export interface JoinOptions {
  uid?: number;
  gid?: number;
  cwd?: string;
  env?: Record<string, string>;
  /** Apply the seccomp deny-list (default true; false exists for tests that prove it matters). */
  seccomp?: boolean;
  /** The cgroup files to join instead of the session's (a terminal's own cgroup; see SessionCgroup.joinProcs). */
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
    ...(memoryBytes >= 16 * MiB ? memorySizes(memoryBytes) : {}),
    ...requested,
  } as Limits;
  // A disk size brings its own inode count.
  if (requested.scratchInodes === undefined) l.scratchInodes = diskInodesFor(l.scratchBytes);
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
  // ext4 wants a few MiB for its own structures; 1 TiB is far past any lab.
  if (!Number.isFinite(l.scratchBytes) || l.scratchBytes < 8 * MiB)
    bad('scratch', 'at least 8M (the session disk holds the upper layer, /tmp and /lab)');
  if (l.scratchBytes > 1024 ** 4) bad('scratch', 'more than 1T');
  if (!Number.isInteger(l.diskBps) || l.diskBps < 1024 * 1024)
    bad('disk rate', 'at least 1M per second (a lab copies a few MiB at once)');
  if (l.diskBps > 1024 ** 4) bad('disk rate', 'more than 1T per second');
  if (!Number.isInteger(l.diskIops) || l.diskIops < 50) bad('disk iops', 'at least 50');
  if (l.diskIops > 10_000_000) bad('disk iops', 'more than 10000000');
  const room = headroom(l.memoryBytes);
  if (memoryWritableTotal(l) > l.memoryBytes - room)
    bad(
      'memory',
      `the tmpfs mounts (${Math.round(memoryWritableTotal(l) / MiB)}M with their inodes: /dev/shm, /run) ` +
        `must stay below the memory limit minus ${Math.round(room / MiB)}M, or filling them OOM-kills the sandbox instead of ENOSPC`,
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

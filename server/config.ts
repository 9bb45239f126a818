/**
 * The one module that reads the environment: every UNDERLAY_* variable is
 * parsed and checked here, and the rest of the server gets a typed Config.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import type { Rate, RateKind } from './sessions/admission';
import { LEVELS, type Level } from './util/logger';

/** Defaults in one place. Everything here can be overridden per call or by env. */
export interface Config {
  /** Sandboxes and the SQLite store. UNDERLAY_STATE_DIR, default /var/lib/underlay. */
  stateDir: string;
  /** Base images. UNDERLAY_IMAGES_DIR, default <stateDir>/images. */
  imagesDir: string;
  /**
   * First host uid of the first session range; ranges are 65536 wide.
   * UNDERLAY_UID_BASE. Two state dirs on one host must use disjoint bases.
   */
  uidBase: number;
  /** How many id ranges exist (uidBase + 65536*k, k < maxSessions): sandboxes and kept disks. */
  maxSessions: number;
  /**
   * Share the base image through idmapped mounts (kernel >= 5.19). When
   * false - UNDERLAY_IDMAP=0, or an older kernel - each uid range gets a
   * shifted copy instead (docs/sandbox.md#without-idmapped-mounts).
   */
  idmap: boolean;
  /** Log level, UNDERLAY_LOG (debug|info|warn|error); unset: each command's default. */
  logLevel: Level | undefined;
  /** The labs `serve` offers. UNDERLAY_LABS_DIR, default the repository's labs/. */
  labsDir: string;
  /** Origins allowed besides the server's own host. UNDERLAY_ALLOWED_ORIGINS, comma-separated. */
  allowedOrigins: string[];
  /** On stop, end sandboxes instead of keeping them for the next start. UNDERLAY_END_ON_STOP=1. */
  endOnStop: boolean;
  /**
   * UNDERLAY_KEEP_FILE_MAX=1: never raise the host's fs.file-max (only warn
   * when sandboxes could fill it; docs/sandbox.md#the-hosts-open-file-table).
   */
  keepFileMax: boolean;
  /** Serve the web app with `next dev` (for web development). UNDERLAY_NEXT_DEV=1. */
  nextDev: boolean;
  /** Host names served besides IP literals, localhost and this machine's name. UNDERLAY_ALLOWED_HOSTS. */
  allowedHosts: string[];
  /** Offer POST /api/sessions (sandboxes outside any lab). UNDERLAY_BARE_SESSIONS=1. */
  bareSessions: boolean;
  /** Labs only for students in an open class. UNDERLAY_CLASSES_ONLY=1 (docs/classroom.md). */
  classesOnly: boolean;
  /**
   * Free space kept on the state dir's filesystem: below it no sandbox starts.
   * UNDERLAY_DISK_RESERVE; undefined: 5 % of the filesystem, at least 1 GiB.
   */
  diskReserveBytes: number | undefined;
  /** Kept session disks: parking and collection (docs/operating.md#parked-sessions). */
  disks: {
    /** A lab session with no tab open is parked after this. UNDERLAY_PARK_AFTER (minutes), default 15. */
    parkAfterMs: number;
    /** A parked disk unused this long is dropped. UNDERLAY_KEEP_PARKED (days), default 14. */
    keepParkedMs: number;
    /** One student's kept disks together (real usage). UNDERLAY_DISK_PER_STUDENT, default 4G. */
    perStudentBytes: number;
    /** All kept disks together; undefined: half the state dir's filesystem. UNDERLAY_DISK_TOTAL. */
    totalBytes: number | undefined;
  };
  /**
   * Warm seats: how many sandboxes of each lab to keep started ahead, for
   * students with no files of their own in that lab to take
   * (docs/operating.md#warm-seats). UNDERLAY_WARM="lab=N,lab=N".
   */
  warm: Map<string, number>;
  /** Admission control (docs/operating.md#admission-control). */
  admission: {
    /** Live sandboxes at once; undefined: derived from the host. UNDERLAY_CAPACITY. */
    capacity: number | undefined;
    /** Live sandboxes per client address. UNDERLAY_PER_CLIENT, default 30. */
    perClient: number;
    /** Live lab sandboxes per student. UNDERLAY_PER_STUDENT, default 2. */
    perStudent: number;
    /** Open TCP connections per client address. UNDERLAY_CONNECTIONS_PER_CLIENT, default 512. */
    connectionsPerClient: number;
    /** Rate overrides, UNDERLAY_RATES="check=20/30,hint=10/20" (burst/per minute). */
    rates: Partial<Record<RateKind, Rate>>;
  };
}

/** The repository's labs/ (from dist/server/ or from server/ under ts-node alike). */
export const REPO_LABS = path.resolve(__dirname, '..', '..', 'labs');

function kernelHasIdmap(release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return !!m && (Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 19));
}

/**
 * Far above the subordinate ids that useradd/adduser hand out (100000:65536,
 * 165536:65536, ... up to SUB_UID_MAX, 600100000 by default): a host user
 * owning a session's range could act as that session's host uid. `underlay
 * doctor` fails on an overlap with /etc/subuid or /etc/subgid.
 */
export const DEFAULT_UID_BASE = 100000 + 65536 * 16384;

function positiveInt(env: NodeJS.ProcessEnv, name: string, dflt: number | undefined) {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer (got ${v})`);
  return n;
}

function sizeEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = parseSize(v);
  if (n === undefined || n < 1)
    throw new Error(`${name} must be a size like 4G or 512M (got ${v})`);
  return n;
}

const list = (v: string | undefined) =>
  (v ?? '')
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);

function parseRates(v: string | undefined): Partial<Record<RateKind, Rate>> {
  const out: Partial<Record<RateKind, Rate>> = {};
  for (const item of list(v)) {
    const m = /^(start|client-start|check|hint|identity|join)=(\d+)\/(\d+)$/.exec(item);
    if (!m || Number(m[2]) < 1 || Number(m[3]) < 1)
      throw new Error(
        `UNDERLAY_RATES: "${item}" is not KIND=BURST/PER_MINUTE with KIND start, client-start, check, hint, identity or join`,
      );
    out[m[1] as RateKind] = { burst: Number(m[2]), perMinute: Number(m[3]) };
  }
  return out;
}

/** Parses warm seats, "lab=N,lab=N" (UNDERLAY_WARM, serve --warm). */
export function parseWarm(v: string | undefined, what: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const item of list(v)) {
    const m = /^([a-z0-9][a-z0-9-]*)=(\d+)$/.exec(item);
    if (!m || Number(m[2]) > 1000)
      throw new Error(
        `${what}: "${item}" is not LAB=N (a lab id and how many sandboxes of it to keep ready, 0 to 1000)`,
      );
    if (out.has(m[1] as string))
      throw new Error(`${what}: lab ${m[1]} is given twice ("${v}"): give each lab once`);
    out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

/**
 * How much slower than a normal host this one is: lab check, hint and setup
 * time limits are multiplied by it. UNDERLAY_TIME_SCALE, default 1; the VM
 * tier's emulated guest (test/vm/) sets 4. A number from 1 to 50.
 */
export function timeScale(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.UNDERLAY_TIME_SCALE;
  if (v === undefined || v === '') return 1;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 1 || n > 50)
    throw new Error(`UNDERLAY_TIME_SCALE must be a number from 1 to 50 (got ${v})`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  timeScale(env); // a bad value stops the start, not the first check
  const stateDir = path.resolve(env.UNDERLAY_STATE_DIR ?? '/var/lib/underlay');
  const imagesDir = path.resolve(env.UNDERLAY_IMAGES_DIR ?? path.join(stateDir, 'images'));
  const uidBase = Number(env.UNDERLAY_UID_BASE ?? DEFAULT_UID_BASE);
  if (!Number.isInteger(uidBase) || uidBase < 65536 || uidBase % 65536 !== 100000 % 65536) {
    throw new Error(`UNDERLAY_UID_BASE must be 100000 + 65536*n (got ${env.UNDERLAY_UID_BASE})`);
  }
  const idmap = env.UNDERLAY_IDMAP === '0' ? false : kernelHasIdmap();
  const logLevel = env.UNDERLAY_LOG || undefined;
  if (logLevel !== undefined && !LEVELS.includes(logLevel as Level)) {
    throw new Error(`UNDERLAY_LOG must be one of ${LEVELS.join(', ')} (got ${logLevel})`);
  }
  return {
    stateDir,
    imagesDir,
    uidBase,
    // Id ranges: live sandboxes and kept (parked) disks each hold one. 8192
    // keep the default base's ranges below 2^31 (where some tools stop coping)
    // and clear of the system tests' (test/helpers/env.ts TEST_UID_BASE).
    maxSessions: 8192,
    idmap,
    logLevel: logLevel as Level | undefined,
    labsDir: path.resolve(env.UNDERLAY_LABS_DIR ?? REPO_LABS),
    allowedOrigins: list(env.UNDERLAY_ALLOWED_ORIGINS),
    endOnStop: env.UNDERLAY_END_ON_STOP === '1',
    keepFileMax: env.UNDERLAY_KEEP_FILE_MAX === '1',
    nextDev: env.UNDERLAY_NEXT_DEV === '1',
    allowedHosts: list(env.UNDERLAY_ALLOWED_HOSTS),
    bareSessions: env.UNDERLAY_BARE_SESSIONS === '1',
    classesOnly: env.UNDERLAY_CLASSES_ONLY === '1',
    diskReserveBytes: sizeEnv(env, 'UNDERLAY_DISK_RESERVE'),
    disks: {
      parkAfterMs: (positiveInt(env, 'UNDERLAY_PARK_AFTER', 15) as number) * 60_000,
      keepParkedMs: (positiveInt(env, 'UNDERLAY_KEEP_PARKED', 14) as number) * 86_400_000,
      perStudentBytes: sizeEnv(env, 'UNDERLAY_DISK_PER_STUDENT') ?? 4 * 1024 ** 3,
      totalBytes: sizeEnv(env, 'UNDERLAY_DISK_TOTAL'),
    },
    warm: parseWarm(env.UNDERLAY_WARM, 'UNDERLAY_WARM'),
    admission: {
      capacity: positiveInt(env, 'UNDERLAY_CAPACITY', undefined),
      perClient: positiveInt(env, 'UNDERLAY_PER_CLIENT', 30) as number,
      perStudent: positiveInt(env, 'UNDERLAY_PER_STUDENT', 2) as number,
      connectionsPerClient: positiveInt(env, 'UNDERLAY_CONNECTIONS_PER_CLIENT', 512) as number,
      rates: parseRates(env.UNDERLAY_RATES),
    },
  };
}

/**
 * Default per-sandbox limits (docs/sandbox.md#default-limits). The session
 * disk is a sparse file: it takes host disk only as the student writes. The
 * sizes of /dev/shm and /run are not here: they follow from the memory limit
 * they are charged to (sandbox/options.ts memorySizes).
 */
export const DEFAULT_LIMITS = {
  memoryBytes: 512 * 1024 * 1024,
  // Few: a fork bomb's cost to every other session grows with the processes
  // it keeps alive (docs/sandbox.md#default-limits, "Why 128 tasks").
  pids: 128,
  cpus: 1,
  scratchBytes: 512 * 1024 * 1024,
  /** The session disk's bandwidth, each way (docs/sandbox.md#disk-bandwidth). */
  diskBps: 32 * 1024 * 1024,
  diskIops: 2000,
};

/** Parses "512M", "1G", "64k", "1048576". Returns undefined on junk. */
export function parseSize(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$/.exec(s);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Math.floor(n * mult);
}

/**
 * Sandbox lifecycle: create (named steps), join, exec, teardown, reap/adopt.
 * Policy only; every syscall goes through native/.
 *
 * Every resource is recorded in the store BEFORE it is created, so a crash at
 * any point leaves a record that `reap` (or the next server start) can finish
 * tearing down. Teardown is idempotent and runs in reverse order:
 * kill (cgroup) -> init -> unmount -> scratch files -> cgroup dirs -> id range.
 */
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeOps, loadNative, type Native } from '../../native/index';
import { DEFAULT_LIMITS, type Config } from '../config';
import type { SandboxRecord, Store } from '../store/store';
import { createLogger, type Logger } from '../util/logger';
import {
  createDriver,
  killCgroups,
  removeCgroupDirs,
  type CgroupDriver,
  type CgroupLimits,
} from './cgroups';
import { SandboxError } from './errors';
import { requireImage, shiftedImage } from './images';
import { buildOps } from './steps';

export interface Limits extends CgroupLimits {
  scratchBytes: number;
  scratchInodes: number;
  tmpBytes: number;
}

export interface CreateOptions {
  hostname?: string;
  /** Extra packages: the sandbox runs on the image built with them (`rootfs build --labs`). */
  packages?: readonly string[];
  limits?: Partial<Limits>;
  ownerKind?: 'cli' | 'server' | 'detached';
}

export interface ExecOptions {
  uid?: number;
  gid?: number;
  cwd?: string;
  env?: Record<string, string>;
  input?: string | Buffer;
  /** Apply the seccomp deny-list (default true; false exists for tests that prove it matters). */
  seccomp?: boolean;
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

/**
 * Helper processes this process spawned itself (libuv or node-pty will
 * waitpid them). collectZombies must never reap those: the real owner would
 * get ECHILD and lose the exit status.
 */
const ownSpawns = new Set<number>();
export function trackSpawn(pid: number | undefined): void {
  if (pid) ownSpawns.add(pid);
}
export function untrackSpawn(pid: number | undefined): void {
  if (pid) ownSpawns.delete(pid);
}

const HOSTNAME_RE = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

/** utime-independent identity of a process: its start time in clock ticks. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parens; fields resume after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

export function nsInode(pid: number, kind: string): number {
  return fs.statSync(`/proc/${pid}/ns/${kind}`).ino;
}

export function validateLimits(l: Limits): void {
  const bad = (field: string, why: string) => {
    throw new SandboxError(`impossible limit ${field}: ${why}`, {
      step: 'allocate-ids',
      code: 'EINVAL',
    });
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
}

export class Sandbox {
  constructor(
    readonly record: SandboxRecord,
    private readonly native: Native,
  ) {}

  get id(): string {
    return this.record.id;
  }
  get initPid(): number {
    return this.record.initPid ?? -1;
  }

  /**
   * A cgroup of its own for one terminal, below the session's (v1: in the
   * freezer hierarchy; v2: below the `init` leaf), so closing the terminal
   * kills exactly what it started - nohup and setsid included (TERMINALS.md
   * R8). Returns the cgroup.procs files to join instead of the session's.
   */
  terminalCgroup(name: string): { dirs: string[]; joinProcs: string[] } {
    const r = this.record;
    if (r.resources.cgroupMode === 'v2') {
      const leaf = r.resources.cgroupDirs[r.resources.cgroupDirs.length - 1] as string;
      const dir = path.join(leaf, `t-${name}`);
      fs.mkdirSync(dir);
      return { dirs: [dir], joinProcs: [path.join(dir, 'cgroup.procs')] };
    }
    const freezer = r.resources.cgroupDirs.find((d) =>
      fs.existsSync(path.join(d, 'freezer.state')),
    );
    if (!freezer) return { dirs: [], joinProcs: r.resources.joinProcs };
    const dir = path.join(freezer, `t-${name}`);
    fs.mkdirSync(dir);
    const procs = path.join(dir, 'cgroup.procs');
    const own = path.join(freezer, 'cgroup.procs');
    return { dirs: [dir], joinProcs: r.resources.joinProcs.map((p) => (p === own ? procs : p)) };
  }

  /** argv for the join helper: enter this sandbox and run `argv`. */
  joinCommand(
    argv: string[],
    opts: Omit<ExecOptions, 'input' | 'timeoutMs' | 'maxBytes'> & {
      setsid?: boolean;
      cgroupProcs?: string[];
    } = {},
  ): {
    file: string;
    args: string[];
  } {
    const r = this.record;
    if (r.initPid === null || r.usernsIno === null) {
      throw new SandboxError(`sandbox ${r.id} is not ready`, { step: 'join', code: 'ESRCH' });
    }
    const env = {
      ...SANDBOX_ENV,
      HOSTNAME: r.hostname,
      ...(opts.uid ? { USER: 'learner', HOME: '/home/learner' } : {}),
      ...opts.env,
    };
    const args = ['join', '--pid', String(r.initPid), '--userns-ino', String(r.usernsIno)];
    for (const p of opts.cgroupProcs ?? r.resources.joinProcs) args.push('--cgroup', p);
    if (opts.uid !== undefined) args.push('--uid', String(opts.uid));
    if (opts.gid !== undefined) args.push('--gid', String(opts.gid));
    args.push('--cwd', opts.cwd ?? (opts.uid ? '/home/learner' : '/root'));
    for (const [k, v] of Object.entries(env)) args.push('--env', `${k}=${v}`);
    if (opts.setsid) args.push('--setsid');
    if (opts.seccomp === false) args.push('--no-seccomp');
    args.push('--', ...argv);
    return { file: this.native.helperPath, args };
  }

  /**
   * Runs `argv` inside the sandbox as sandbox root (or `uid`) through pipes,
   * bounded in time and output. Host fds never reach the sandbox: the helper
   * marks every fd above 2 close-on-exec, and 0-2 are pipes.
   */
  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const { file, args } = this.joinCommand(argv, { ...opts, setsid: true });
    const max = opts.maxBytes ?? 1024 * 1024;
    const timeout = opts.timeoutMs ?? 10_000;
    const t0 = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const child = spawn(file, args, {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {} as NodeJS.ProcessEnv,
      });
      trackSpawn(child.pid);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outN = 0;
      let errN = 0;
      let truncated = false;
      let timedOut = false;
      child.stdout.on('data', (b: Buffer) => {
        if (outN < max) out.push(b.subarray(0, max - outN));
        else truncated = true;
        outN += b.length;
      });
      child.stderr.on('data', (b: Buffer) => {
        if (errN < max) err.push(b.subarray(0, max - errN));
        else truncated = true;
        errN += b.length;
      });
      const timer = setTimeout(() => {
        timedOut = true;
        // The helper relays SIGTERM; its child dies with it (PDEATHSIG) if
        // it ignores that, once the helper is SIGKILLed.
        child.kill('SIGTERM');
        setTimeout(() => child.kill('SIGKILL'), 500).unref();
      }, timeout);
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(SandboxError.wrap(`exec in sandbox ${this.id}`, e, 'join'));
      });
      // Finish when the command exits, not when every holder of its stdout
      // does: a background job (`sleep 300 &`) inherits the pipe and would
      // otherwise hold the call open. Give the pipes a moment to drain.
      child.on('exit', () => {
        untrackSpawn(child.pid);
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 50).unref();
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString('utf8');
        const rc = code ?? 128 + (signal ? 9 : 0);
        if (rc === 125 && stderr.startsWith('ERR\t')) {
          reject(parseHelperError(stderr, this.id));
          return;
        }
        resolve({
          code: rc,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr,
          timedOut,
          truncated: truncated || outN > max || errN > max,
          ms: Number(process.hrtime.bigint() - t0) / 1e6,
        });
      });
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input ?? '');
    });
  }
}

/** Turns the helper's "ERR\tstep\tsyscall\terrno\tpath\tdetail" line into a SandboxError. */
export function parseHelperError(text: string, id: string): SandboxError {
  const [, step = 'join', syscall = '', errno = '0', p = '', detail = ''] = (
    text.split('\n')[0] ?? ''
  ).split('\t');
  const n = Number(errno);
  const code = n
    ? Object.entries(os.constants.errno as Record<string, number>).find(([, v]) => v === n)?.[0]
    : undefined;
  return new SandboxError(
    `sandbox ${id}: ${step}: ${syscall} ${p} failed${code ? ` (${code})` : ''}${detail ? ` [${detail}]` : ''}`,
    {
      step,
      syscall,
      errno: n,
      code,
      path: p,
      detail,
    },
  );
}

export interface ManagerOptions {
  config: Config;
  store: Store;
  driver?: CgroupDriver;
  native?: Native;
  logger?: Logger;
}

export class SandboxManager {
  readonly config: Config;
  readonly store: Store;
  readonly driver: CgroupDriver;
  readonly native: Native;
  private readonly log: Logger;

  constructor(opts: ManagerOptions) {
    this.config = opts.config;
    this.store = opts.store;
    this.native = opts.native ?? loadNative();
    this.native.addon.initialize(SandboxError);
    this.native.addon.setChildSubreaper();
    this.driver = opts.driver ?? createDriver();
    this.log = opts.logger ?? createLogger();
  }

  private sessionsDir(): string {
    return path.join(this.config.stateDir, 'sessions');
  }

  async create(opts: CreateOptions = {}): Promise<Sandbox> {
    const limits: Limits = { ...DEFAULT_LIMITS, ...opts.limits };
    validateLimits(limits);
    const hostname = opts.hostname ?? 'underlay';
    if (!HOSTNAME_RE.test(hostname)) {
      throw new SandboxError(
        `invalid hostname ${JSON.stringify(hostname)}: use letters, digits and '-', at most 63`,
        {
          step: 'hostname',
          code: 'EINVAL',
        },
      );
    }
    const image = requireImage(this.config.imagesDir, opts.packages ?? []);
    const id = crypto.randomBytes(6).toString('hex');
    const sessionDir = path.join(this.sessionsDir(), id);
    const ownerStart = processStartTime(process.pid) ?? 0;
    const t0 = Date.now();
    // allocate-ids: own 65536-id range, recorded before anything exists.
    const record = this.store.reserve(
      (k) => ({
        id,
        k,
        uidBase: this.config.uidBase + 65536 * k,
        state: 'creating',
        initPid: null,
        initStart: null,
        usernsIno: null,
        ownerPid: process.pid,
        ownerStart,
        ownerKind: opts.ownerKind ?? 'cli',
        hostname,
        resources: {
          sessionDir,
          mounts: [],
          cgroupMode: this.driver.mode,
          cgroupDirs: [],
          joinProcs: [],
        },
        createdAt: t0,
      }),
      this.config.maxSessions,
    );
    const uid = record.uidBase;
    const { addon } = this.native;
    try {
      fs.mkdirSync(this.sessionsDir(), { recursive: true, mode: 0o711 });
      fs.chmodSync(this.config.stateDir, 0o711);
      // 0711 all the way: the sandbox's root (an unprivileged host uid)
      // must be able to walk to `merged` for the self-bind (SANDBOX.md §2.2).
      fs.mkdirSync(sessionDir, { mode: 0o711 });

      // cgroup
      const cg = this.driver.create(id, limits, { uid, gid: uid });
      record.resources.cgroupDirs = cg.dirs;
      record.resources.joinProcs = cg.joinProcs;
      this.store.update(record);

      // scratch: upper + work on a size- and inode-limited tmpfs
      const scratch = path.join(sessionDir, 'scratch');
      const lower = path.join(sessionDir, 'lower');
      const merged = path.join(sessionDir, 'merged');
      for (const d of [scratch, lower, merged]) fs.mkdirSync(d, { mode: 0o711 });
      record.resources.mounts = [scratch, lower, merged];
      this.store.update(record);
      addon.mount(
        'tmpfs',
        scratch,
        'tmpfs',
        'MS_NODEV',
        `size=${limits.scratchBytes},nr_inodes=${limits.scratchInodes},mode=0711`,
        'scratch',
      );
      const upper = path.join(scratch, 'upper');
      const work = path.join(scratch, 'work');
      fs.mkdirSync(upper, { mode: 0o755 });
      fs.mkdirSync(work, { mode: 0o700 });
      // The upper dir's owner becomes the owner of `/` inside: sandbox root.
      fs.chownSync(upper, uid, uid);

      const imageRoot = this.config.idmap
        ? image.rootfs
        : shiftedImage(image, this.config.imagesDir, uid);
      const ops = buildOps({
        uidBase: uid,
        gidBase: uid,
        hostname,
        imageRoot,
        idmap: this.config.idmap,
        lowerDir: lower,
        upperDir: upper,
        workDir: work,
        mergedDir: merged,
        cgroup: cg,
        tmpBytes: limits.tmpBytes,
        tmpInodes: 16384,
      });
      const { initPid } = await addon.createSandbox(this.native.helperPath, encodeOps(ops));
      record.initPid = initPid;
      cg.afterStart();
      record.initStart = processStartTime(initPid) ?? null;
      record.usernsIno = nsInode(initPid, 'user');
      record.state = 'ready';
      this.store.update(record);
      this.log.info('sandbox created', { id, k: record.k, initPid, ms: Date.now() - t0 });
      return new Sandbox(record, this.native);
    } catch (err) {
      const e = err instanceof SandboxError ? err : SandboxError.wrap(`create sandbox ${id}`, err);
      this.log.warn('sandbox create failed', { id, error: e.toJSON() });
      await this.teardown(record).catch((te) =>
        this.log.error('cleanup after failed create', { id, error: String(te) }),
      );
      throw e;
    }
  }

  get(id: string): Sandbox {
    const r = this.store.get(id);
    if (!r)
      throw new SandboxError(`no sandbox with id ${JSON.stringify(id)}`, {
        step: 'join',
        code: 'ENOENT',
        hint: 'list them with `underlay sandbox ls`',
      });
    return new Sandbox(r, this.native);
  }

  list(): (SandboxRecord & { alive: boolean; ownerAlive: boolean })[] {
    return this.store.list().map((r) => ({ ...r, alive: initAlive(r), ownerAlive: ownerAlive(r) }));
  }

  async destroy(id: string): Promise<void> {
    const r = this.store.get(id);
    if (!r)
      throw new SandboxError(`no sandbox with id ${JSON.stringify(id)}`, {
        step: 'teardown',
        code: 'ENOENT',
      });
    await this.teardown(r);
  }

  /**
   * Tears down what a crashed CLI or server left: sandboxes whose owner
   * process is gone. With `all`, every sandbox in this state dir.
   */
  async reap(opts: { all?: boolean } = {}): Promise<string[]> {
    const done: string[] = [];
    for (const r of this.store.list()) {
      if (!opts.all && r.ownerKind === 'detached') continue;
      if (!opts.all && ownerAlive(r) && r.ownerPid !== process.pid) continue;
      await this.teardown(r);
      done.push(r.id);
    }
    this.collectZombies();
    return done;
  }

  /**
   * Server start: a server-owned sandbox whose init still lives is adopted
   * (ownership moves to this process); anything else orphaned is reaped.
   */
  async adoptOrReap(): Promise<{ adopted: string[]; reaped: string[] }> {
    const adopted: string[] = [];
    const reaped: string[] = [];
    for (const r of this.store.list()) {
      if (r.ownerKind === 'detached') continue;
      if (ownerAlive(r) && r.ownerPid !== process.pid) continue;
      if (r.ownerKind === 'server' && r.state === 'ready' && initAlive(r)) {
        r.ownerPid = process.pid;
        r.ownerStart = processStartTime(process.pid) ?? 0;
        this.store.update(r);
        adopted.push(r.id);
      } else {
        await this.teardown(r);
        reaped.push(r.id);
      }
    }
    this.collectZombies();
    return { adopted, reaped };
  }

  /**
   * Reaps sandbox processes that ended up as OUR zombie children: as a
   * subreaper we inherit the init and the join relays of any sandbox whose
   * creator (a CLI run) was killed. A dying pid-namespace init waits until
   * every task of its namespace is reaped, including children of such a
   * zombie relay, so this also unblocks teardown. Only specific pids running
   * as a sandbox uid that we did not spawn ourselves; never waitpid(-1).
   */
  collectZombies(): number {
    const lo = this.config.uidBase;
    const hi = lo + 65536 * this.config.maxSessions;
    let n = 0;
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d) || ownSpawns.has(Number(d))) continue;
      try {
        const status = fs.readFileSync(`/proc/${d}/status`, 'utf8');
        const state = /^State:\s+(\S)/m.exec(status)?.[1];
        const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
        if (state === 'Z' && ppid === process.pid && uid >= lo && uid < hi) {
          if (this.native.addon.reapChild(Number(d))) n++;
        }
      } catch {
        // gone meanwhile
      }
    }
    return n;
  }

  /** Detaches a sandbox from its creator: only `sandbox rm` (or `reap --all`) removes it. */
  detach(sb: Sandbox): void {
    sb.record.ownerKind = 'detached';
    this.store.update(sb.record);
  }

  /** Idempotent, reverse-order teardown of everything the record names. */
  async teardown(r: SandboxRecord): Promise<void> {
    const t0 = Date.now();
    const { addon } = this.native;
    r.state = 'destroying';
    if (this.store.get(r.id)) this.store.update(r);
    // 1. every process of the session, through its cgroups
    await killCgroups(r.resources.cgroupMode, r.resources.cgroupDirs);
    // 2. the init (normally already dead: it is in the cgroup too)
    if (r.initPid !== null && initAlive(r)) {
      let fd = -1;
      try {
        fd = addon.pidfdOpen(r.initPid);
        addon.pidfdSignal(fd, 9);
        addon.pidfdExited(fd, 2000);
      } catch (err) {
        if ((err as SandboxError).code !== 'ESRCH') throw err;
      } finally {
        if (fd >= 0) addon.closeFd(fd);
      }
    }
    // Reap it if it is ours (we are a subreaper); otherwise its parent will.
    if (r.initPid !== null) {
      for (let i = 0; i < 200 && !addon.reapChild(r.initPid) && zombieOf(r); i++) await sleep(5);
    }
    // 3. host mounts, innermost first
    for (const m of [...r.resources.mounts].reverse()) {
      try {
        addon.umount(m, false, 'teardown');
      } catch (err) {
        const code = (err as SandboxError).code;
        if (code === 'EINVAL' || code === 'ENOENT') continue; // not (or no longer) mounted
        if (code === 'EBUSY') {
          addon.umount(m, true, 'teardown');
          continue;
        }
        throw err;
      }
    }
    // 4. files
    const sessionDir = r.resources.sessionDir;
    if (sessionDir.startsWith(this.sessionsDir() + path.sep)) {
      fs.rmSync(sessionDir, { recursive: true, force: true });
    }
    // 5. cgroup dirs (student-made children included)
    removeCgroupDirs(r.resources.cgroupDirs);
    // 6. the id range
    this.store.remove(r.id);
    this.log.info('sandbox destroyed', { id: r.id, ms: Date.now() - t0 });
  }
}

/** Whether the native module is built and loadable (for `underlay doctor`). */
export function nativeStatus(): { ok: boolean; detail: string } {
  try {
    return { ok: true, detail: loadNative().helperPath };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

/** True while the record's init is a zombie whose parent is this process. */
function zombieOf(r: SandboxRecord): boolean {
  if (r.initPid === null) return false;
  try {
    const st = fs.readFileSync(`/proc/${r.initPid}/stat`, 'utf8');
    const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return rest[0] === 'Z' && Number(rest[1]) === process.pid && Number(rest[19]) === r.initStart;
  } catch {
    return false;
  }
}

/** The process lives: same pid, same start time, and not a zombie (a killed process may wait long for its reaper). */
function procAlive(pid: number | null, start: number | null): boolean {
  if (pid === null || start === null) return false;
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(rest[19]) === start && rest[0] !== 'Z' && rest[0] !== 'X';
  } catch {
    return false;
  }
}

export function initAlive(r: SandboxRecord): boolean {
  return procAlive(r.initPid, r.initStart);
}

export function ownerAlive(r: SandboxRecord): boolean {
  return procAlive(r.ownerPid, r.ownerStart);
}

/**
 * A running sandbox, as callers see it: enter it and run commands, through
 * pipes (`exec`, `spawnPipes`) or a pty (`spawnPty`). Every process that
 * enters a sandbox is a fresh underlay-nsexec `join` (the Node process never
 * changes namespaces), and the handle owns every such spawn: it records the
 * pid so the reaper never waitpid()s a child that its owner (PipedProcess,
 * also under a terminal's ConsolePty) will wait for itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { joinArgs, parseErrRecord, type Native } from '../../native/index';
import type { SandboxRecord, SandboxResources } from '../store/store';
import { terminalCgroup } from './cgroups';
import { ConsolePty } from './console-pty';
import { PipedProcess } from './piped';
import { SandboxError } from './errors';
import { SANDBOX_ENV, type ExecOptions, type ExecResult, type JoinOptions } from './options';
import { exitStatus } from '../util/exit-status';

/** RLIMIT_NPROC is this much below pids.max (at most an eighth of it): see nprocLimit(). */
const NPROC_MARGIN = 16;

/** Pids of helper processes this process spawned itself (their owner reaps them, not the reaper). */
class SpawnRegistry {
  private readonly pids = new Set<number>();
  private starting = 0;
  private settled: (() => void)[] = [];
  /** A spawn is under way whose pid is not known yet. */
  begin(): void {
    this.starting++;
  }
  end(): void {
    if (--this.starting === 0) for (const f of this.settled.splice(0)) f();
  }
  /** Runs `f` once no spawn is under way (at once if none is). */
  whenSettled(f: () => void): void {
    if (this.starting === 0) f();
    else if (!this.settled.includes(f)) this.settled.push(f);
  }
  /** Whether any spawn's pid is still unknown: then no child can be told apart. */
  get pending(): boolean {
    return this.starting > 0;
  }
  add(pid: number | undefined): void {
    if (pid) this.pids.add(pid);
  }
  delete(pid: number | undefined): void {
    if (pid) this.pids.delete(pid);
  }
  has(pid: number): boolean {
    return this.pids.has(pid);
  }
}

/**
 * One registry per process, because the subreaper role it protects is per
 * process: any manager's reaper must skip any handle's spawns. Only Sandbox
 * adds to it, so no caller has to remember to.
 */
export const ownSpawns = new SpawnRegistry();

export interface PtyOptions extends JoinOptions {
  cols: number;
  rows: number;
}

/** The helper's own failure: exit 125 with an `ERR\t...` record as the first line of stderr. */
export function helperFailure(code: number, stderr: string, id: string): SandboxError | undefined {
  if (code !== 125) return undefined;
  const props = parseErrRecord(stderr);
  return props ? SandboxError.fromNative(props, `sandbox ${id}`) : undefined;
}

export class Sandbox {
  constructor(
    readonly record: SandboxRecord,
    private readonly native: Native,
  ) {}

  get id(): string {
    return this.record.id;
  }

  /**
   * A shell whose join failed: the helper's `ERR\t...` record (or whatever
   * else it said on stderr) in words, with the step and a hint, as
   * everywhere else. Undefined when the join itself went fine.
   */
  explainFailedStart(stderr: string, status: number, startError?: Error): string | undefined {
    if (startError)
      return (
        `\x1b[31mThe shell could not start: the join helper did not start: ${startError.message}\x1b[0m\r\n` +
        'Hint: the server may be out of processes or file descriptors (see its log); reload the page to try again.\r\n'
      );
    const e = helperFailure(status, stderr, this.id);
    if (!e) {
      const text = stderr.trim();
      return text ? `${text.replace(/\n/g, '\r\n')}\r\n` : undefined;
    }
    return (
      `\x1b[31mThe shell could not start: ${e.message}${e.step ? ` (step: ${e.step})` : ''}\x1b[0m\r\n` +
      `Hint: ${e.hint ?? 'the sandbox may have ended; reload the page to get it back, or a new one.'}\r\n`
    );
  }

  get initPid(): number {
    return this.record.initPid ?? -1;
  }

  /**
   * A cgroup of its own for one terminal (see cgroups.ts terminalCgroup), so
   * closing the terminal kills exactly what it started, nohup and setsid
   * included. Returns its dirs and the cgroup files to join (SessionCgroup.joinProcs).
   */
  terminalCgroup(name: string): { dirs: string[]; joinProcs: string[] } {
    return terminalCgroup(this.record.resources, name);
  }

  /** The helper's argv: enter this sandbox and run `argv`. */
  private join(
    argv: string[],
    opts: JoinOptions & {
      setsid?: boolean;
      pty?: { cols: number; rows: number; consoleFd: number; consoleIno: number };
    },
  ): string[] {
    const r = this.record;
    if (r.initPid === null || r.usernsIno === null) {
      throw new SandboxError(`sandbox ${r.id} is not ready`, { step: 'join', code: 'ESRCH' });
    }
    const nproc = this.nprocLimit();
    return joinArgs({
      pid: r.initPid,
      usernsIno: r.usernsIno,
      cgroupProcs: opts.cgroupProcs ?? r.resources.joinProcs,
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
      // The home dir is the student's to remove: then start in / (the
      // helper tells a terminal so). A cwd the caller chose must exist.
      ...(opts.cwd !== undefined
        ? { cwd: opts.cwd }
        : { cwd: opts.uid ? '/home/learner' : '/root', cwdFallback: '/' }),
      env: {
        ...SANDBOX_ENV,
        HOSTNAME: r.hostname,
        ...(opts.uid ? { USER: 'learner', HOME: '/home/learner' } : {}),
        ...opts.env,
        // Only the trusted toolset: never /usr/local, never the student's.
        ...(opts.trusted ? { PATH: '/usr/local/sbin:/usr/local/bin' } : {}),
      },
      ...(opts.setsid ? { setsid: true } : {}),
      ...(opts.pty ? { pty: opts.pty } : {}),
      ...(opts.seccomp === false ? { seccomp: false } : {}),
      ...(nproc !== undefined ? { nproc } : {}),
      ...(opts.trusted ? { view: this.checkView() } : {}),
      argv,
    });
  }

  /**
   * RLIMIT_NPROC for every process joined into the sandbox: a little below
   * the session's pids limit, read from its cgroup (the source of truth, also
   * for a sandbox adopted after a restart). The pids controller refuses a
   * fork bomb's forks only after each has copied its parent's page tables,
   * and five bombs at their limits slowed every fork on the host up to
   * twentyfold (bench:class); RLIMIT_NPROC refuses them at the start. It
   * counts one uid's processes, so it stops a bomb run as one user; the
   * margin leaves room for the others (the init, a helper not yet switched
   * to the sandbox's uid). The pids limit still bounds everything
   * (docs/sandbox.md#default-limits).
   */
  private nprocLimit(): number | undefined {
    if (this.nproc !== null) return this.nproc;
    for (const dir of this.record.resources.cgroupDirs) {
      let text: string;
      try {
        text = fs.readFileSync(path.join(dir, 'pids.max'), 'utf8');
      } catch (err) {
        // not the pids hierarchy (v1), or no pids controller; anything else
        // is not cached: the next join reads again
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        return undefined;
      }
      const pids = Number(text.trim()); // NaN for "max": no limit
      this.nproc =
        Number.isSafeInteger(pids) && pids > 1
          ? pids - Math.min(NPROC_MARGIN, Math.floor(pids / 8))
          : undefined;
      return this.nproc;
    }
    this.nproc = undefined;
    return undefined;
  }

  private nproc: number | undefined | null = null;

  private checkView(): NonNullable<SandboxResources['checkView']> {
    const v = this.record.resources.checkView;
    if (!v)
      throw new SandboxError(`sandbox ${this.record.id} has no trusted check view`, {
        step: 'join',
        code: 'ENOENT',
        hint: 'it was made by an older server: reset the lab for a new sandbox',
      });
    return v;
  }

  /**
   * `argv` in the sandbox with stdin/stdout/stderr as pipes, in a session of
   * its own. The caller handles the streams; the pid is tracked until exit.
   */
  spawnPipes(argv: string[], opts: JoinOptions = {}): PipedProcess {
    return new PipedProcess(
      this.native.addon,
      this.native.helperPath,
      this.join(argv, { ...opts, setsid: true }),
      ownSpawns,
    );
  }

  /**
   * `argv` in the sandbox on a pty of the sandbox's own, which the server
   * reads and writes directly (console-pty.ts); the helper runs in a session
   * of its own (nothing it starts can reach the server's terminal) and is
   * tracked until exit.
   */
  spawnPty(argv: string[], opts: PtyOptions): ConsolePty {
    const { cols, rows, ...join } = opts;
    return new ConsolePty(
      this.native.addon,
      this.native.helperPath,
      (c) =>
        this.join(argv, {
          ...join,
          setsid: true,
          pty: { cols, rows, consoleFd: c.fd, consoleIno: c.ino },
        }),
      cols,
      rows,
      (stderr, status, startError) => this.explainFailedStart(stderr, status, startError),
      ownSpawns,
    );
  }

  /**
   * Runs `argv` inside the sandbox as sandbox root (or `uid`) through pipes,
   * bounded in time and output. Host fds never reach the sandbox: the helper
   * marks every fd above 2 close-on-exec, and 0-2 are pipes.
   */
  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const max = opts.maxBytes ?? 1024 * 1024;
    const timeout = opts.timeoutMs ?? 10_000;
    const t0 = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      let child: PipedProcess;
      try {
        child = this.spawnPipes(argv, opts);
      } catch (err) {
        reject(err);
        return;
      }
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
      child.on('error', (e: unknown) => {
        clearTimeout(timer);
        reject(SandboxError.wrap(`exec in sandbox ${this.id}`, e, 'join'));
      });
      // Finish when the command exits, not when every holder of its stdout
      // does: a background job (`sleep 300 &`) inherits the pipe and would
      // otherwise hold the call open. Give the pipes a moment to drain.
      child.on('exit', () => {
        setTimeout(() => {
          child.stdout.destroy();
          child.stderr.destroy();
        }, 50).unref();
      });
      child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        const stderr = Buffer.concat(err).toString('utf8');
        const rc = exitStatus(code, signal);
        const failure = helperFailure(rc, stderr, this.id);
        if (failure) {
          reject(failure);
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

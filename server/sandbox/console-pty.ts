/**
 * A terminal's shell on a pty of its sandbox's own devpts, read and written
 * by the server directly (docs/terminals.md#a-pty-of-the-sandboxs-own).
 *
 * The join helper (`join --pty`) starts as any join does (PipedProcess:
 * posix_spawn on a pool thread, reaped through its pidfd) with pipes for
 * its own words only: its "PTY" cue on stdout, or its `ERR\t...` record on
 * stderr and exit 125 when the join fails. The helper enters the sandbox,
 * opens its /dev/ptmx, forks the shell on the other end and sends the
 * master back over a console socket (SCM_RIGHTS): runc's console-socket
 * pattern. The helper copies the socket's end from us by number
 * (pidfd_getfd), as it is handed nothing but its three pipes; we keep it
 * open until the master arrived or the helper ended. The helper stays as
 * the shell's parent only to relay signals and its exit status; no process
 * copies the bytes, so a keystroke crosses one pty, not two.
 *
 * node-pty started the helper until the twenty-fourth session: its forkpty
 * copies the whole server (page tables of a 100-150 MB process, on the JS
 * thread), and the copy's teardown at exec and the server's copy-on-write
 * faults after it were a fifth of a herd's host CPU
 * (docs/benchmarks.md, "The herd's forks").
 */
import * as fs from 'node:fs';
import * as tty from 'node:tty';
import type { NativeAddon } from '../../native/index';
import { exitStatus } from '../util/exit-status';
import { PipedProcess, type SpawnTracker } from './piped';

/** After the helper exits, the pty's last output is read until EIO, or this quiet spell. */
const TAIL_QUIET_MS = 100;
/** ...and never longer than this (a client that stopped reading, a job holding the pty). */
const TAIL_MAX_MS = 2_000;
/** A helper still alive this long after its pty's last slave closed is ended (the terminal is dead). */
const ORPHAN_MS = 2_000;
/** Of what the helper says on its stdout and stderr, kept for its error record. */
const DIAG_MAX = 64 * 1024;
/** The helper's cue on its stdout that the master is on the console socket. */
const CUE = /PTY\r?\n/;

export class ConsolePty {
  private readonly helper: PipedProcess;
  /** The console socket's ends, until the master arrives or the helper ends. */
  private sock: number;
  private helperEnd: number;
  /** The pty master while it is open (libuv closes it at EIO: never use a stale number). */
  private master = -1;
  private received = false;
  private orphan: NodeJS.Timeout | undefined;
  private reader: tty.ReadStream | undefined;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private retry: NodeJS.Timeout | undefined;
  private backoff = 1;
  private paused = false;
  private readonly dataListeners: ((d: Buffer) => void)[] = [];
  private readonly exitListeners: ((status: number) => void)[] = [];
  private readonly drainListeners: (() => void)[] = [];
  /** What the helper said on stderr (why it failed). */
  private diag = '';
  /** What the helper said on stdout (its cue). */
  private said = '';
  private startError: Error | undefined;
  private readonly spawnListeners: ((pid: number) => void)[] = [];
  private readonly startFailedListeners: ((err: Error) => void)[] = [];
  private helperStatus: number | undefined;
  private masterDone = false;
  private tail: NodeJS.Timeout | undefined;
  private tailCap: NodeJS.Timeout | undefined;
  private finished = false;

  constructor(
    private readonly native: NativeAddon,
    helperPath: string,
    /** The helper's argv, given the console socket's end for it (our fd number, its inode). */
    args: (console: { fd: number; ino: number }) => string[],
    private cols: number,
    private rows: number,
    /**
     * The start's failure in words, from what the helper said on stderr and
     * its status, or the error that kept it from starting at all.
     */
    private readonly explain: (
      said: string,
      status: number,
      startError: Error | undefined,
    ) => string | undefined,
    /** Told the helper's pid (the server's reaper leaves it to us). */
    tracker: SpawnTracker,
  ) {
    const [server, helper] = native.consoleSocket();
    this.sock = server;
    this.helperEnd = helper;
    let argv: string[];
    try {
      argv = args({ fd: helper, ino: fs.fstatSync(helper).ino });
    } catch (err) {
      this.closeSockets();
      throw err;
    }
    this.helper = new PipedProcess(native, helperPath, argv, tracker);
    this.helper.stdin.end(); // it reads nothing
    this.helper.stdout.on('data', (d: Buffer) => {
      if (this.said.length < DIAG_MAX) this.said += d.toString();
      if (CUE.test(this.said)) this.receive();
    });
    this.helper.stderr.on('data', (d: Buffer) => {
      if (this.diag.length < DIAG_MAX) this.diag += d.toString();
    });
    this.helper.on('spawn', () => {
      for (const l of this.spawnListeners) l(this.pid);
    });
    this.helper.on('error', (err: Error) => {
      // Not started (or its pipes could not be read): the terminal ends as a
      // failed join does (125), with this error in words.
      this.startError ??= err;
      for (const l of this.startFailedListeners) l(err);
    });
    // 'close': exited, and its stdout and stderr read to the end, so an
    // error record written just before the exit is in `diag`.
    this.helper.on('close', (code: number | null, signal: NodeJS.Signals | null) =>
      this.helperClosed(this.startError ? 125 : exitStatus(code, signal)),
    );
  }

  /** Once the helper runs (its pid is known). */
  onSpawn(listener: (pid: number) => void): void {
    this.spawnListeners.push(listener);
  }

  /** When the helper could not be started (the terminal then ends with 125). */
  onStartFailed(listener: (err: Error) => void): void {
    this.startFailedListeners.push(listener);
  }

  /** The helper's pid; 0 until it has started (a pool thread spawns it). */
  get pid(): number {
    return this.helper.pid ?? 0;
  }

  onData(listener: (d: Buffer) => void): void {
    this.dataListeners.push(listener);
  }

  /** The shell-style status (125: the join failed; 128+n: killed by signal n). */
  onExit(listener: (status: number) => void): void {
    this.exitListeners.push(listener);
  }

  /** Called whenever queued input shrinks (or is dropped). */
  onDrain(listener: () => void): void {
    this.drainListeners.push(listener);
  }

  /** Input written but not yet taken by the pty. */
  get pendingInput(): number {
    return this.queued;
  }

  /**
   * Writes what the pty takes now (a keystroke: at once, no thread pool);
   * the rest waits in order and is retried with a backoff, never a spin, while
   * the shell does not read.
   */
  write(data: string | Buffer): void {
    if (this.finished) return;
    const b = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (b.length === 0) return;
    this.queue.push(b);
    this.queued += b.length;
    if (this.queue.length === 1 && !this.retry) this.drain();
  }

  resize(cols: number, rows: number): void {
    this.cols = cols;
    this.rows = rows;
    if (this.master < 0 || this.finished) return;
    try {
      this.native.setWindowSize(this.master, cols, rows);
    } catch {
      // the pty is gone; the exit follows
    }
  }

  pause(): void {
    this.paused = true;
    this.reader?.pause();
  }

  resume(): void {
    this.paused = false;
    this.reader?.resume();
  }

  /** Signals the helper, which passes it on (SIGKILL: the shell dies with it, PDEATHSIG). */
  kill(signal: NodeJS.Signals = 'SIGHUP'): void {
    // Through its pidfd (once reaped, its pid may belong to anyone); a
    // signal sent before the pid is known goes as soon as it is.
    if (this.helperStatus !== undefined) return;
    this.helper.kill(signal);
  }

  private closeSockets(): void {
    for (const fd of [this.sock, this.helperEnd]) if (fd >= 0) this.native.closeFd(fd);
    this.sock = -1;
    this.helperEnd = -1;
  }

  private receive(): void {
    if (this.sock < 0) return;
    let fd: number;
    try {
      fd = this.native.receivePty(this.sock);
    } catch (err) {
      if (this.helperStatus === undefined)
        this.diag += `underlay: the shell's pty did not arrive: ${(err as Error).message}\n`;
      this.closeSockets();
      this.kill('SIGKILL');
      return;
    }
    if (fd < 0) return; // not yet
    this.closeSockets();
    // libuv reads a pty master as a tty handle (node-pty does the same).
    let reader: tty.ReadStream;
    try {
      reader = new tty.ReadStream(fd);
    } catch (err) {
      this.native.closeFd(fd);
      this.diag += `underlay: cannot read the shell's pty: ${(err as Error).message}\n`;
      this.kill('SIGKILL');
      return;
    }
    this.master = fd;
    this.received = true;
    this.reader = reader;
    reader.on('data', (d: Buffer) => this.output(d));
    reader.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EAGAIN') return;
      this.masterEnded(); // EIO: no process holds the pty's other end any more
    });
    reader.on('close', () => this.masterEnded());
    if (this.paused) reader.pause();
    this.resize(this.cols, this.rows);
    this.drain();
  }

  private output(d: Buffer): void {
    for (const l of this.dataListeners) l(d);
    if (this.tail) this.tail.refresh();
  }

  private drain(): void {
    this.retry = undefined;
    while (this.queue.length > 0) {
      if (this.master < 0 || this.finished) return;
      const b = this.queue[0]!;
      let n: number;
      try {
        n = fs.writeSync(this.master, b);
        if (n === 0) throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          this.retry = setTimeout(() => this.drain(), this.backoff);
          this.retry.unref();
          this.backoff = Math.min(50, this.backoff * 2);
          return this.drained();
        }
        // EIO: the shell is gone; its input with it.
        this.queue.length = 0;
        this.queued = 0;
        return this.drained();
      }
      this.backoff = 1;
      this.queued -= n;
      if (n >= b.length) this.queue.shift();
      else this.queue[0] = b.subarray(n);
    }
    this.drained();
  }

  private drained(): void {
    for (const l of this.drainListeners) l();
  }

  /** EIO or close: libuv has closed the fd; nothing may write to or resize that number again. */
  private masterEnded(): void {
    if (this.masterDone) return;
    this.masterDone = true;
    this.master = -1;
    this.queue.length = 0;
    this.queued = 0;
    this.drained();
    // No process holds the pty's other end, so the terminal can do nothing
    // more; a helper that outlives that (the shell closed its fds and went
    // on running) is ended, and its shell with it.
    if (this.helperStatus === undefined) {
      this.orphan = setTimeout(() => this.kill('SIGKILL'), ORPHAN_MS);
      this.orphan.unref();
    }
    this.maybeFinish();
  }

  private helperClosed(status: number): void {
    if (this.helperStatus !== undefined) return;
    this.helperStatus = status;
    this.receive(); // its "PTY" line and the helper's exit may come in one turn
    clearTimeout(this.orphan);
    if (this.received && !this.masterDone) {
      // The tty layer hands the last output over asynchronously: read on
      // until EIO, a quiet spell, or the cap.
      this.tail = setTimeout(() => this.finish(), TAIL_QUIET_MS);
      this.tailCap = setTimeout(() => this.finish(), TAIL_MAX_MS);
      if (this.paused) this.reader?.resume(); // the tail is small; take it
      return;
    }
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.helperStatus === undefined) return;
    if (this.received && !this.masterDone) return;
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.tail);
    clearTimeout(this.tailCap);
    clearTimeout(this.retry);
    clearTimeout(this.orphan);
    const status = this.helperStatus ?? 125;
    this.closeSockets();
    // Closing the master hangs up whatever still holds the other end.
    this.reader?.destroy();
    this.master = -1;
    this.queue.length = 0;
    this.queued = 0;
    const why = this.explain(this.diag, status, this.startError);
    if (why) this.output(Buffer.from(why));
    for (const l of this.exitListeners) l(status);
    this.drained();
  }
}

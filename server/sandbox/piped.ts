/**
 * A join helper with pipes for stdin/stdout/stderr, started without
 * blocking the event loop (native spawnPiped: posix_spawn on a worker
 * thread) and reaped through its pidfd (native watchExit). Node's own spawn
 * forks the whole server on the JS thread and waits there for the exec:
 * 7-9 ms of a ~150 MB server per spawn, during which no terminal of the class
 * echoes (docs/benchmarks.md, twentieth session). Behaves as much of a
 * ChildProcess as the callers use: the three streams, `pid`, `kill`, and
 * the events 'spawn' (the pid is known), 'error', 'exit' (code, signal) and
 * 'close' (the same, once stdout and stderr are closed too).
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as os from 'node:os';
import { PassThrough } from 'node:stream';
import type { NativeAddon } from '../../native/index';

/** Signal numbers to names, the first name of each (SIGABRT, not SIGIOT), as Node reports them. */
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>();
for (const [name, n] of Object.entries(os.constants.signals))
  if (!SIGNAL_NAMES.has(n)) SIGNAL_NAMES.set(n, name as NodeJS.Signals);

/** The status of a child whose exit could not be read (reaped by someone else): a failure. */
const UNKNOWN_STATUS = 255;

/** What the reaper must know: which children are ours, and when a spawn is under way. */
export interface SpawnTracker {
  add(pid: number | undefined): void;
  delete(pid: number | undefined): void;
  /** A spawn whose pid is not known yet: the reaper reaps nothing meanwhile. */
  begin(): void;
  end(): void;
}

export class PipedProcess extends EventEmitter {
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  private pidfd = -1;
  private exited = false;
  private pendingSignal: NodeJS.Signals | undefined;
  private openStreams = 2;

  constructor(
    private readonly addon: NativeAddon,
    path: string,
    args: string[],
    tracker: SpawnTracker,
  ) {
    super();
    for (const s of [this.stdout, this.stderr])
      s.once('close', () => {
        this.openStreams--;
        this.maybeClose();
      });
    tracker.begin();
    let started: ReturnType<NativeAddon['spawnPiped']>;
    try {
      started = addon.spawnPiped(path, args);
    } catch (err) {
      started = Promise.reject(err as Error);
    }
    started.then(
      (r) => {
        tracker.add(r.pid);
        tracker.end();
        this.pid = r.pid;
        this.pidfd = r.pidfd;
        this.emit('spawn');
        try {
          this.attach(r.stdin, r.stdout, r.stderr);
        } catch (err) {
          for (const fd of [r.stdin, r.stdout, r.stderr]) addon.closeFd(fd);
          this.endStreams();
          this.kill('SIGKILL'); // reaped below, as any exit
          queueMicrotask(() => this.emit('error', err));
        }
        try {
          addon.watchExit(r.pidfd, (code, signal) => {
            this.exited = true;
            this.pidfd = -1;
            tracker.delete(r.pid);
            this.exitCode = code >= 0 ? code : signal ? null : UNKNOWN_STATUS;
            this.signalCode = signal ? (SIGNAL_NAMES.get(signal) ?? null) : null;
            this.emit('exit', this.exitCode, this.signalCode);
            this.maybeClose();
          });
        } catch (err) {
          // Cannot happen short of the loop failing to poll a new fd: end
          // the child; nothing reaps it (it stays a zombie of ours).
          try {
            addon.pidfdSignal(r.pidfd, os.constants.signals.SIGKILL);
          } catch {
            // gone already
          }
          this.pidfd = -1;
          this.failed(err);
          return;
        }
        if (this.pendingSignal) this.kill(this.pendingSignal);
      },
      (err: unknown) => {
        tracker.end();
        this.failed(err);
      },
    );
  }

  /** Sends `signal` (default SIGTERM) through the pidfd; false once it has ended. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.exited) return false;
    if (this.pidfd < 0) {
      // Sent once the pid is known; a SIGKILL asked for is never weakened.
      if (this.pendingSignal !== 'SIGKILL') this.pendingSignal = signal;
      return true;
    }
    try {
      this.addon.pidfdSignal(this.pidfd, os.constants.signals[signal]);
      return true;
    } catch {
      return false; // it ended meanwhile (ESRCH)
    }
  }

  private attach(inFd: number, outFd: number, errFd: number): void {
    const input = new net.Socket({ fd: inFd, readable: false, writable: true });
    input.on('error', () => {}); // EPIPE: the command does not read its input
    // Ended by the pipe once all is written (never destroyed early: a write
    // still queued would be lost); let go of at the latest when the child ends.
    this.stdin.pipe(input);
    this.once('exit', () => input.destroy());
    for (const [fd, dest] of [
      [outFd, this.stdout],
      [errFd, this.stderr],
    ] as const) {
      const src = new net.Socket({ fd, readable: true, writable: false });
      src.on('error', () => dest.end());
      src.pipe(dest);
      // A caller that destroys a stream (a background job still holds the
      // pipe) lets go of the fd as well.
      dest.once('close', () => src.destroy());
    }
  }

  /** Not started (or not watchable): 'error', then 'close' as ChildProcess does. */
  private failed(err: unknown): void {
    this.exited = true;
    this.exitCode = this.exitCode ?? UNKNOWN_STATUS;
    this.emit('error', err);
    this.endStreams();
  }

  /** Nothing more will come on stdout/stderr: end them (unread, they still close). */
  private endStreams(): void {
    for (const s of [this.stdout, this.stderr]) {
      s.end();
      s.resume();
    }
  }

  private maybeClose(): void {
    if (this.exited && this.openStreams === 0) {
      this.openStreams = -1; // once
      this.emit('close', this.exitCode, this.signalCode);
    }
  }
}

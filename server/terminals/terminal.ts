/**
 * One terminal: a node-pty running the join helper (so the shell lives in
 * the session's sandbox), with the rules of docs/terminals.md:
 *
 * - Leading-edge batching: the first chunk after a quiet period goes out
 *   at once (echo stays ~1 ms), later chunks are batched for <= 5 ms or 64 KiB.
 * - Flow control: pause the pty above 256 KiB unacknowledged, resume below
 *   64 KiB; counters reset on (re)attach, acks from stale attachments ignored.
 * - Input backpressure: node-pty retries EAGAIN with setImmediate, which burns a core
 *   while a paste sits in front of a process that does not read. The write
 *   queue is replaced with one that backs off, and input is acknowledged only
 *   once the queue has room, so clients send big pastes chunk by chunk.
 * - Replay by offset: every byte has an offset; a bounded buffer serves resumes.
 */
import * as fs from 'node:fs';
import type { IPty } from 'node-pty';
import { LIMITS } from '../protocol/index';
import { exitStatus } from '../util/exit-status';
import { ReplayBuffer } from './replay-buffer';

export type OutputSink = (offset: number, data: Buffer) => void;

const BATCH_MS = 5;
const BATCH_BYTES = 64 * 1024;
const INPUT_HIGH_WATER = 64 * 1024;
/**
 * Input queued for a shell that does not read, beyond which more is dropped
 * (`input-overflow`). A client that waits for acks never gets near it; one
 * that does not grew the server by 260 MB with 200 MiB of input.
 */
export const INPUT_HARD_CAP = 1024 * 1024;

interface WriteTask {
  buffer: Buffer;
  offset: number;
}
interface NodePtyWriteStream {
  _writeQueue: WriteTask[];
  _processWriteQueue: () => void;
  _fd: number;
}

export interface TerminalOptions {
  replayBytes?: number;
  onExit?: (code: number) => void;
}

export class Terminal {
  readonly replay: ReplayBuffer;
  exited: { code: number } | undefined;
  private sink: OutputSink | undefined;
  private attachId = 0;
  private unacked = 0;
  private paused = false;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  private exitListeners: ((code: number) => void)[] = [];
  private startWaiters: (() => void)[] = [];
  private cols: number;
  private rows: number;

  constructor(
    readonly id: string,
    readonly name: string,
    private readonly pty: IPty,
    cols: number,
    rows: number,
    private readonly opts: TerminalOptions = {},
  ) {
    this.cols = cols;
    this.rows = rows;
    this.replay = new ReplayBuffer(opts.replayBytes);
    this.installWriteBackoff();
    pty.onData((d: string | Buffer) =>
      this.onOutput(typeof d === 'string' ? Buffer.from(d, 'utf8') : d),
    );
    pty.onExit(({ exitCode, signal }) => {
      this.flush();
      this.exited = { code: exitStatus(exitCode, signal) };
      this.opts.onExit?.(this.exited.code);
      for (const l of this.exitListeners) l(this.exited.code);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  onExit(listener: (code: number) => void): void {
    this.exitListeners.push(listener);
  }

  get pid(): number {
    return this.pty.pid;
  }

  /**
   * Attaches a client. `from` is the first offset it lacks; returns where
   * the stream will continue and whether the client must clear its screen
   * (its offset fell out of the replay buffer). Replayed bytes are sent
   * through the sink before any new output.
   */
  attach(
    sink: OutputSink,
    from: number | undefined,
  ): { offset: number; reset: boolean; token: number } {
    this.flush();
    this.sink = sink;
    this.attachId++;
    this.unacked = 0;
    let start = from ?? this.replay.startOffset;
    let reset = false;
    let data = this.replay.since(start);
    if (data === undefined) {
      reset = from !== undefined && from !== 0;
      start = this.replay.startOffset;
      data = this.replay.since(start) ?? Buffer.alloc(0);
    }
    if (data.length) this.send(start, data);
    if (this.paused && this.unacked < LIMITS.lowWaterBytes) this.resumePty();
    return { offset: start, reset, token: this.attachId };
  }

  detach(token: number): void {
    if (token === this.attachId) this.sink = undefined;
  }

  ack(token: number, bytes: number): void {
    if (token !== this.attachId) return; // an ack from a stale attachment
    this.unacked = Math.max(0, this.unacked - bytes);
    if (this.paused && this.unacked < LIMITS.lowWaterBytes) this.resumePty();
  }

  /**
   * Resolves once the pty has room for more input (the client's cue to send
   * the next chunk), with false if the data was dropped: INPUT_HARD_CAP
   * bytes already wait for a shell that does not read.
   */
  input(data: string): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    if (this.pendingInput() + Buffer.byteLength(data) > INPUT_HARD_CAP)
      return Promise.resolve(false);
    this.pty.write(data);
    if (this.pendingInput() < INPUT_HIGH_WATER) return Promise.resolve(true);
    return new Promise((resolve) => this.waiters.push(() => resolve(true)));
  }

  resize(cols: number, rows: number): void {
    if (this.exited || (cols === this.cols && rows === this.rows)) return;
    this.flush(); // output produced for the old size goes out first (VS Code does the same)
    this.cols = cols;
    this.rows = rows;
    this.pty.resize(cols, rows);
  }

  /** Stops the helper; the caller kills the terminal's processes through its cgroup. */
  kill(): void {
    if (this.timer) clearTimeout(this.timer);
    try {
      this.pty.kill('SIGKILL');
    } catch {
      // already gone
    }
  }

  /** Resolves at the first output (the shell's prompt, usually) or exit, or after `ms`. */
  started(ms: number): Promise<void> {
    if (this.replay.endOffset > 0 || this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.startWaiters = this.startWaiters.filter((w) => w !== done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.startWaiters.push(done);
      this.exitListeners.push(done);
    });
  }

  private onOutput(data: Buffer): void {
    if (this.startWaiters.length) for (const w of this.startWaiters.splice(0)) w();
    this.replay.append(data);
    if (!this.timer) {
      // Leading edge: nothing sent in the last BATCH_MS, send right now.
      this.send(this.replay.endOffset - data.length, data);
      this.timer = setTimeout(() => this.flushTick(), BATCH_MS);
      return;
    }
    this.batch.push(data);
    this.batchBytes += data.length;
    if (this.batchBytes >= BATCH_BYTES) this.flush();
  }

  private flushTick(): void {
    this.timer = undefined;
    if (this.batchBytes > 0) {
      this.flush();
      this.timer = setTimeout(() => this.flushTick(), BATCH_MS);
    }
  }

  private flush(): void {
    if (this.batchBytes === 0) return;
    const data = this.batch.length === 1 ? (this.batch[0] as Buffer) : Buffer.concat(this.batch);
    this.batch = [];
    this.batchBytes = 0;
    this.send(this.replay.endOffset - data.length, data);
  }

  private send(offset: number, data: Buffer): void {
    // Detached output still counts as unacknowledged: a flood with nobody
    // watching pauses the pty instead of spinning through the replay buffer.
    this.unacked += data.length;
    this.sink?.(offset, data);
    if (!this.paused && this.unacked > LIMITS.highWaterBytes) {
      this.paused = true;
      this.pty.pause();
    }
  }

  private resumePty(): void {
    this.paused = false;
    this.pty.resume();
  }

  private pendingInput(): number {
    const ws = (this.pty as unknown as { _writeStream?: NodePtyWriteStream })._writeStream;
    if (!ws) return 0;
    return ws._writeQueue.reduce((n, t) => n + t.buffer.length - t.offset, 0);
  }

  /**
   * node-pty 1.1.0's CustomWriteStream retries EAGAIN with setImmediate (a
   * busy loop, microsoft/node-pty#956). Same algorithm, but EAGAIN waits
   * 1 ms, doubling to 50 ms, and drained queues wake input waiters.
   */
  private installWriteBackoff(): void {
    const ws = (this.pty as unknown as { _writeStream?: NodePtyWriteStream })._writeStream;
    if (!ws || typeof ws._processWriteQueue !== 'function') return;
    let delay = 1;
    const wake = () => {
      if (this.pendingInput() < INPUT_HIGH_WATER) for (const w of this.waiters.splice(0)) w();
    };
    ws._processWriteQueue = () => {
      const task = ws._writeQueue[0];
      if (!task) return wake();
      fs.write(ws._fd, task.buffer, task.offset, (err, written) => {
        if (err) {
          if (err.code === 'EAGAIN') {
            setTimeout(() => ws._processWriteQueue(), delay).unref();
            delay = Math.min(50, delay * 2);
          } else {
            ws._writeQueue.length = 0; // the pty is gone (EIO): drop input
            wake();
          }
          return;
        }
        delay = 1;
        task.offset += written;
        if (task.offset >= task.buffer.length) ws._writeQueue.shift();
        wake();
        ws._processWriteQueue();
      });
    };
  }
}

/**
 * One terminal: a shell in the session's sandbox on a pty of the sandbox's
 * own, whose master the server holds (a TerminalPty: sandbox/console-pty.ts),
 * with the rules of docs/terminals.md:
 *
 * - Leading-edge batching: the first chunk after a quiet period goes out
 *   at once (echo stays ~1 ms), later chunks are batched for <= 5 ms or 64 KiB;
 *   the first chunk after typed input (its echo) goes out at once too.
 * - Any number of attachments (tabs, sockets), each reading the replay
 *   buffer at its own offset with its own flow control: at most 256 KiB
 *   unacknowledged per attachment, in messages of at most 64 KiB. The pty
 *   pauses only when no attachment can take more (so a background tab never
 *   stalls the one in front) and resumes when one drops below 64 KiB. An
 *   attachment that falls out of the replay buffer skips ahead (a gap in
 *   offsets tells its client). Acks from ended attachments are ignored.
 * - Input backpressure: input is acknowledged only once the pty's write
 *   queue (which backs off, never spins, while the shell does not read) has
 *   room, so clients send big pastes chunk by chunk.
 * - Replay by offset: every byte has an offset; a bounded buffer serves resumes.
 * - A terminal may exist before its pty (a lab's later shells start after
 *   every first prompt of a herd, sessions/session-manager.ts): it can be
 *   attached, typed into and resized meanwhile, and adopt()s the pty when
 *   it is spawned; fail() ends it if the spawn fails.
 * - Under contention a flood is paced (pacer.ts): its pty is not read for
 *   a while, as if every client were slow.
 * - Input is held until the first output (or EARLY_INPUT_MS): until the
 *   shell's line editor takes the pty, the pty is in cooked mode and its line
 *   discipline would echo typed-ahead input itself (shown twice).
 */
import { LIMITS } from '../protocol/index';
import { exitStatus } from '../util/exit-status';
import type { OutputPacer } from './pacer';
import { ReplayBuffer } from './replay-buffer';

export type OutputSink = (offset: number, data: Buffer) => void;

const BATCH_MS = 5;
const BATCH_BYTES = 64 * 1024;
const INPUT_HIGH_WATER = 64 * 1024;
/** Input up to this size is typing (a key, an escape sequence, a short autocompletion). */
const ECHO_INPUT_MAX = 16;
/**
 * Input queued for a shell that does not read, beyond which more is dropped
 * (`input-overflow`). A client that waits for acks never gets near it; one
 * that does not grew the server by 260 MB with 200 MiB of input.
 */
export const INPUT_HARD_CAP = 1024 * 1024;

/** What a terminal needs of its shell's pty (sandbox/console-pty.ts; fakes in unit tests). */
export interface TerminalPty {
  readonly pid: number;
  onData(listener: (data: Buffer) => void): void;
  /** A shell-style status: the code, or 128 + the signal. */
  onExit(listener: (status: number) => void): void;
  /** Called whenever queued input shrinks. */
  onDrain(listener: () => void): void;
  /** Input written but not yet taken by the pty. */
  readonly pendingInput: number;
  write(data: string): void;
  resize(cols: number, rows: number): void;
  pause(): void;
  resume(): void;
  kill(signal?: NodeJS.Signals): void;
}

interface Attachment {
  sink: OutputSink;
  /** The next offset to send. */
  cursor: number;
  unacked: number;
  /** Unacknowledged bytes allowed: LIMITS.highWaterBytes, grown for a fast client. */
  window: number;
  /** Bytes sent and acknowledged so far, and when recent sends went out (for the ack delay). */
  sentBytes: number;
  ackedBytes: number;
  sends: { end: number; at: number }[];
  /** The window changes once per round: when what was sent before the last change is acked. */
  roundEnd: number;
  /** The longest ack delay of this round (ms; -1: none measured yet), and whether the window held output back in it. */
  roundDelay: number;
  limited: boolean;
}

/**
 * The ack delay a window aims at: how long the client takes to render what
 * was sent. A client that renders a flood fast gets a bigger window (no stall
 * of a round trip per 256 KiB); one that lags keeps the 256 KiB floor, so
 * ^C's prompt never waits behind much more than this much of its rendering.
 */
const ACK_DELAY_MS = 20;
/** Send times kept per attachment (older ones are dropped). */
const MAX_SENDS = 256;

export interface TerminalOptions {
  replayBytes?: number;
  onExit?: (code: number) => void;
  /** Input arrived before the pty: someone is using this terminal now. */
  onEarlyInput?: () => void;
  /** The server's, shared by all terminals: paces floods while others type on a busy host. */
  pacer?: OutputPacer;
  /** Whose share this terminal's output counts against (its session's); default: its own. */
  paceShare?: object;
}

/** Input waits for the first output at most this long after the spawn. */
const EARLY_INPUT_MS = 2_000;

export class Terminal {
  readonly replay: ReplayBuffer;
  exited: { code: number } | undefined;
  private readonly attachments = new Map<number, Attachment>();
  private attachId = 0;
  /** Output produced while nobody was attached: a flood with nobody watching pauses too. */
  private unwatched = 0;
  private paused = false;
  /** Flow control wants the pty paused (no attachment can take more). */
  private flowFull = false;
  /** The pacer holds the pty until this timer fires. */
  private pacedTimer: NodeJS.Timeout | undefined;
  /** Bytes appended since the last pump (waiting for the batch window). */
  private batchBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  private exitListeners: ((code: number) => void)[] = [];
  private startWaiters: (() => void)[] = [];
  private cols: number;
  private rows: number;
  private resizeListeners = new Set<(cols: number, rows: number) => void>();
  private pty: TerminalPty | undefined;
  /** Input typed before the shell's first output, written then. */
  private early: string[] = [];
  private earlyBytes = 0;
  private holding = true;
  private holdTimer: NodeJS.Timeout | undefined;
  private killed = false;

  constructor(
    readonly id: string,
    readonly name: string,
    /** Undefined: spawned later, then adopt(). */
    pty: TerminalPty | undefined,
    cols: number,
    rows: number,
    private readonly opts: TerminalOptions = {},
  ) {
    this.cols = cols;
    this.rows = rows;
    this.replay = new ReplayBuffer(opts.replayBytes);
    if (pty) this.adopt(pty, cols, rows);
  }

  /** Whether it has its pty yet (false also when it never will: killed before, or failed). */
  get spawned(): boolean {
    return this.pty !== undefined;
  }

  /** Whether kill() came before the pty: the spawner should not spawn it. */
  get cancelled(): boolean {
    return this.killed && !this.pty;
  }

  /**
   * The pty, spawned at `cols` x `rows` (resized here if the terminal was
   * resized meanwhile); what was typed meanwhile is written to it now.
   */
  adopt(pty: TerminalPty, cols = this.cols, rows = this.rows): void {
    if (this.pty) throw new Error(`terminal ${this.id} already has a pty`);
    this.pty = pty;
    pty.onData((d) => this.onOutput(d));
    pty.onExit((status) => this.ended(status));
    pty.onDrain(() => this.wake());
    if (this.killed) return this.kill();
    if (cols !== this.cols || rows !== this.rows) pty.resize(this.cols, this.rows);
    if (this.paused) pty.pause();
    if (this.holding) {
      this.holdTimer = setTimeout(() => this.releaseInput(), EARLY_INPUT_MS);
      this.holdTimer.unref();
    }
  }

  /** The shell is up (or took too long to say so): what was typed so far goes to it. */
  private releaseInput(): void {
    if (!this.holding || !this.pty) return;
    this.holding = false;
    clearTimeout(this.holdTimer);
    for (const d of this.early.splice(0)) this.pty.write(d);
    this.earlyBytes = 0;
  }

  /** The spawn failed: the terminal ends with `code`, `message` as its only output. */
  fail(message: string, code = 125): void {
    if (this.pty || this.exited) return;
    this.onOutput(Buffer.from(`${message}\r\n`));
    this.ended(code);
  }

  private ended(code: number): void {
    if (this.exited) return;
    this.flush();
    this.exited = { code };
    clearTimeout(this.pacedTimer);
    this.pacedTimer = undefined;
    this.opts.pacer?.forget(this);
    this.early = [];
    this.earlyBytes = 0;
    clearTimeout(this.holdTimer);
    this.opts.onExit?.(code);
    for (const l of this.exitListeners) l(code);
    for (const w of this.waiters.splice(0)) w();
  }

  onExit(listener: (code: number) => void): void {
    this.exitListeners.push(listener);
  }

  /** The helper's pid, 0 before the pty exists. */
  get pid(): number {
    return this.pty?.pid ?? 0;
  }

  /**
   * Attaches a client (other attachments keep theirs). `from` is the first
   * offset it lacks; returns where the stream will continue and whether the
   * client must clear its screen (`from` fell out of the replay buffer).
   * Replayed bytes go through the sink, flow-controlled, before new output.
   */
  attach(
    sink: OutputSink,
    from: number | undefined,
  ): { offset: number; reset: boolean; token: number } {
    this.flush();
    const token = ++this.attachId;
    let start = from ?? this.replay.startOffset;
    let reset = false;
    if (start < this.replay.startOffset || start > this.replay.endOffset) {
      // Held no longer (or never produced): what is held, from a clean screen.
      reset = from !== undefined;
      start = this.replay.startOffset;
    }
    const a: Attachment = {
      sink,
      cursor: start,
      unacked: 0,
      window: LIMITS.highWaterBytes,
      sentBytes: 0,
      ackedBytes: 0,
      sends: [],
      roundEnd: 0,
      roundDelay: -1,
      limited: false,
    };
    this.attachments.set(token, a);
    this.unwatched = 0;
    this.pump(a);
    this.updatePause();
    return { offset: start, reset, token };
  }

  detach(token: number): void {
    if (!this.attachments.delete(token)) return;
    if (this.attachments.size === 0) this.unwatched = 0;
    this.updatePause();
  }

  /** How many clients are attached. */
  get attached(): number {
    return this.attachments.size;
  }

  ack(token: number, bytes: number): void {
    const a = this.attachments.get(token);
    if (!a) return; // an ack from an ended attachment
    a.unacked = Math.max(0, a.unacked - bytes);
    this.sizeWindow(a, bytes);
    this.pump(a);
    this.updatePause();
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
    this.opts.pacer?.noteInput(this);
    // ^C, ^Z and ^\ (the tty's interrupt keys).
    if (
      this.pacedTimer &&
      ['\x03', '\x1a', '\x1c'].some((c) => data.includes(c)) &&
      this.opts.pacer?.forgive(this.opts.paceShare ?? this)
    ) {
      clearTimeout(this.pacedTimer);
      this.pacedTimer = undefined;
      this.updatePause();
    }
    if (this.pty && !this.holding) this.pty.write(data);
    else {
      this.early.push(data);
      this.earlyBytes += Buffer.byteLength(data);
      if (!this.pty) this.opts.onEarlyInput?.();
    }
    // Typed keys, not a paste: their echo skips the batching window.
    if (data.length <= ECHO_INPUT_MAX) this.echoDue = true;
    if (this.pendingInput() < INPUT_HIGH_WATER) return Promise.resolve(true);
    return new Promise((resolve) => this.waiters.push(() => resolve(true)));
  }

  resize(cols: number, rows: number): void {
    if (this.exited || (cols === this.cols && rows === this.rows)) return;
    this.flush(); // output produced for the old size goes out first (VS Code does the same)
    this.cols = cols;
    this.rows = rows;
    this.pty?.resize(cols, rows);
    for (const l of this.resizeListeners) l(cols, rows);
  }

  /** The pty's size now. */
  get size(): { cols: number; rows: number } {
    return { cols: this.cols, rows: this.rows };
  }

  /** Calls `listener` after every resize (read-only views follow the size); returns the unsubscribe. */
  onResize(listener: (cols: number, rows: number) => void): () => void {
    this.resizeListeners.add(listener);
    return () => this.resizeListeners.delete(listener);
  }

  /** Stops the helper; the caller kills the terminal's processes through its cgroup. */
  kill(): void {
    if (this.timer) clearTimeout(this.timer);
    this.killed = true;
    // Never spawned: it ends here, as a killed shell would.
    if (!this.pty) return this.ended(exitStatus(null, 'SIGKILL'));
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

  /** Input was typed since the last output went out: the next output is its echo. */
  private echoDue = false;

  private onOutput(data: Buffer): void {
    if (this.holding) this.releaseInput();
    if (this.startWaiters.length) for (const w of this.startWaiters.splice(0)) w();
    this.replay.append(data);
    if (this.attachments.size === 0) this.unwatched += data.length;
    const wait = this.opts.pacer?.charge(this, this.opts.paceShare ?? this, data.length) ?? 0;
    if (wait > 0 && !this.pacedTimer && !this.exited) {
      this.pacedTimer = setTimeout(() => {
        this.pacedTimer = undefined;
        this.updatePause();
      }, wait);
    }
    if (!this.timer) {
      // Leading edge: nothing sent in the last BATCH_MS, send right now.
      this.echoDue = false;
      this.pumpAll();
      this.timer = setTimeout(() => this.flushTick(), BATCH_MS);
    } else if (this.echoDue) {
      // The first output after a keystroke is its echo: out now, even
      // inside a batching window (fast typing would otherwise wait ~5 ms).
      this.echoDue = false;
      this.pumpAll();
    } else {
      this.batchBytes += data.length;
      if (this.batchBytes >= BATCH_BYTES) this.flush();
    }
    this.updatePause();
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
    this.pumpAll();
  }

  private pumpAll(): void {
    this.batchBytes = 0;
    for (const a of this.attachments.values()) this.pump(a);
  }

  /**
   * Once per round (what was sent before the last change is acked): the
   * window grows by half if it held output back and every ack came within
   * half of ACK_DELAY_MS (the client could take more), and shrinks by a
   * quarter if an ack took longer than ACK_DELAY_MS (the client is the
   * bottleneck); always between highWaterBytes and maxWindowBytes.
   */
  private sizeWindow(a: Attachment, acked: number): void {
    a.ackedBytes = Math.min(a.sentBytes, a.ackedBytes + acked);
    let sentAt: number | undefined;
    while (a.sends.length > 0 && a.sends[0]!.end <= a.ackedBytes) sentAt = a.sends.shift()!.at;
    if (sentAt !== undefined) a.roundDelay = Math.max(a.roundDelay, performance.now() - sentAt);
    // A round ends when its sends are acknowledged, and only one that
    // measured a delay may change the window.
    if (a.ackedBytes < a.roundEnd || a.roundDelay < 0) return;
    let w = a.window;
    if (a.roundDelay > ACK_DELAY_MS) w *= 0.75;
    else if (a.roundDelay < ACK_DELAY_MS / 2 && a.limited) w *= 1.5;
    a.window = Math.round(Math.min(LIMITS.maxWindowBytes, Math.max(LIMITS.highWaterBytes, w)));
    a.roundEnd = a.sentBytes;
    a.roundDelay = -1;
    a.limited = false;
  }

  /** Sends an attachment what it lacks, in messages of <= 64 KiB, up to its window. */
  private pump(a: Attachment): void {
    while (a.unacked < a.window && a.cursor < this.replay.endOffset) {
      // Fell out of the buffer (it did not ack while others read on): skip ahead.
      if (a.cursor < this.replay.startOffset) a.cursor = this.replay.startOffset;
      const data = this.replay.slice(a.cursor, BATCH_BYTES);
      if (!data || data.length === 0) break;
      const offset = a.cursor;
      a.cursor += data.length;
      a.unacked += data.length;
      a.sentBytes += data.length;
      const at = performance.now();
      const last = a.sends[a.sends.length - 1];
      // Sends within a millisecond share a record (its older time: a delay
      // is never underestimated); the oldest go past MAX_SENDS.
      if (last && at - last.at < 1) last.end = a.sentBytes;
      else {
        a.sends.push({ end: a.sentBytes, at });
        if (a.sends.length > MAX_SENDS) a.sends.shift();
      }
      a.sink(offset, data);
    }
    if (a.unacked >= a.window) a.limited = true; // full: output waits (here or in the paused pty)
  }

  /** Paused while no attachment can take more output, nobody watches a flood, or the pacer says wait. */
  private updatePause(): void {
    let full: boolean;
    if (this.attachments.size === 0) full = this.unwatched > LIMITS.highWaterBytes;
    else {
      full = true;
      for (const a of this.attachments.values())
        if (a.unacked < (this.flowFull ? a.window / 4 : a.window)) full = false;
    }
    this.flowFull = full;
    const pause = full || this.pacedTimer !== undefined;
    if (pause && !this.paused) {
      this.paused = true;
      this.pty?.pause();
    } else if (!pause && this.paused) this.resumePty();
  }

  private resumePty(): void {
    this.paused = false;
    this.pty?.resume();
  }

  private pendingInput(): number {
    if (this.holding) return this.earlyBytes;
    return this.pty?.pendingInput ?? 0;
  }

  /** Input waiters go on once the pty's queue has room (or the pty is gone). */
  private wake(): void {
    if (this.pendingInput() < INPUT_HIGH_WATER || this.exited)
      for (const w of this.waiters.splice(0)) w();
  }
}

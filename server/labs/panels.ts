/**
 * Live kernel-state panels (labs/README.md#live-panels): the data behind a
 * step's `panels:`, read inside the student's sandbox by one long-lived
 * gatherer (panel-gather.py, through the trusted path of checks: the image's
 * own python and a fresh /proc; its CPU is the sandbox's) that prints a JSON
 * line when a 0.5 s sample changed, while someone watches. The feed passes
 * on at most two updates a second (the latest of those that came too soon,
 * once the gap is over), drops a line that is too big or not JSON, and ends
 * the gatherer when the watch stops.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { PanelData, PanelSpec, PanelUpdate } from '../protocol/index';
import type { Sandbox } from '../sandbox/index';

const GATHER = fs.readFileSync(
  [
    path.join(__dirname, 'panel-gather.py'),
    path.resolve(__dirname, '..', '..', '..', 'server', 'labs', 'panel-gather.py'),
  ].find((p) => fs.existsSync(p)) as string,
  'utf8',
);

/** A line of the gatherer above this is dropped (a flood of processes or files). */
const MAX_LINE = 256 * 1024;
/**
 * Updates closer together than this wait: at most two a second. The last
 * one that waited is sent when the gap is over (the reader prints only on a
 * change or every 5 s, so a sample dropped here left the panel behind the
 * shell for up to 5 s); one it replaced is dropped.
 */
const MIN_GAP_MS = 450;

export class PanelFeed {
  private child: ReturnType<Sandbox['spawnPipes']> | undefined;
  private buf = '';
  private last = 0;
  private pending: PanelUpdate | undefined;
  private pendingTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Lines passed on, and dropped (too soon, too big, not JSON): for tests and benchmarks. */
  readonly counts = { sent: 0, dropped: 0 };

  constructor(
    private readonly sandbox: Sandbox,
    private readonly step: string,
    private readonly specs: PanelSpec[],
    private readonly emit: (u: PanelUpdate) => void,
    private readonly onEnd: (why: string) => void = () => {},
  ) {}

  start(): void {
    const child = this.sandbox.spawnPipes(
      ['python3', '-u', '-c', GATHER, JSON.stringify(this.specs)],
      { trusted: true },
    );
    this.child = child;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.take(chunk));
    child.stderr.resume();
    child.stdin.on('error', () => {});
    child.on('error', () => this.end('the panel reader could not start'));
    child.on('exit', () => this.end('the panel reader ended'));
  }

  /** Pid of the helper that runs the gatherer (host view), for benchmarks. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.pendingTimer);
    this.pending = undefined;
    this.child?.kill('SIGTERM');
    this.child = undefined;
  }

  private end(why: string): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.pendingTimer);
    this.pending = undefined;
    this.onEnd(why);
  }

  private take(chunk: string): void {
    this.buf += chunk;
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) {
        if (this.buf.length > MAX_LINE) {
          this.buf = '';
          this.counts.dropped++;
        }
        return;
      }
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      this.line(line);
    }
  }

  private line(line: string): void {
    // A line already in the pipe when the watch stopped.
    if (this.stopped) return;
    if (line.length > MAX_LINE) {
      this.counts.dropped++;
      return;
    }
    let msg: { t?: unknown; panels?: unknown };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      this.counts.dropped++;
      return;
    }
    if (!Array.isArray(msg.panels) || typeof msg.t !== 'number') {
      this.counts.dropped++;
      return;
    }
    const update = { step: this.step, t: msg.t, panels: msg.panels as PanelData[] };
    const wait = this.last + MIN_GAP_MS - Date.now();
    if (this.pending) this.counts.dropped++;
    if (wait <= 0) {
      // A held one whose timer has not run yet (a busy loop) is older: it
      // must not follow this one.
      clearTimeout(this.pendingTimer);
      this.pendingTimer = undefined;
      this.pending = undefined;
      return this.send(update);
    }
    this.pending = update;
    this.pendingTimer ??= setTimeout(() => {
      this.pendingTimer = undefined;
      const p = this.pending;
      this.pending = undefined;
      if (p && !this.stopped) this.send(p);
    }, wait);
  }

  private send(update: PanelUpdate): void {
    this.last = Date.now();
    this.counts.sent++;
    this.emit(update);
  }
}

/**
 * Live kernel-state panels (labs/README.md#live-panels): the data behind a
 * step's `panels:`, read inside the student's sandbox by one long-lived
 * gatherer (panel-gather.py, through the trusted path of checks: the image's
 * own python and a fresh /proc; its CPU is the sandbox's) that prints a JSON
 * line when a 0.5 s sample changed, while someone watches. The feed passes on at most two
 * updates a second, drops a line that is too big or not JSON, and ends the
 * gatherer when the watch stops.
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
/** Updates closer together than this are dropped: at most two a second. */
const MIN_GAP_MS = 450;

export class PanelFeed {
  private child: ReturnType<Sandbox['spawnPipes']> | undefined;
  private buf = '';
  private last = 0;
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
    this.child?.kill('SIGTERM');
    this.child = undefined;
  }

  private end(why: string): void {
    if (this.stopped) return;
    this.stopped = true;
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
    const now = Date.now();
    if (line.length > MAX_LINE || now - this.last < MIN_GAP_MS) {
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
    this.last = now;
    this.counts.sent++;
    this.emit({ step: this.step, t: msg.t, panels: msg.panels as PanelData[] });
  }
}

/**
 * Fair output under contention (docs/terminals.md#output-under-contention).
 *
 * A terminal that floods (`yes`, `cat` of a big file) costs the host far more
 * CPU than its sandbox's cgroup is charged for: the shell's pty writes are
 * its own, but the kernel's pty work queue, the server and every browser
 * that renders the flood are not (on this 2-core kind of host, five `yes`
 * floods read at 2 MB/s each kept both cores 99 % busy and the other
 * students' echo p99 at 29 ms; paced, 22-24 % and 9-13 ms). Nobody reads more than
 * a few hundred lines a second, so while the host is busy AND someone else
 * is typing, a student's terminals together may produce at most RATE bytes a
 * second beyond a burst: the server stops reading a pty that is over its
 * share, so the flooding process blocks in its write and spends nothing.
 * Alone on a host, or on an idle one, a flood runs at full speed.
 *
 * Shares are whatever the caller groups terminals by (the session: eight
 * terminals of one student do not get eight shares). "Someone else typing"
 * is any terminal but the flooding one, the student's own other terminals
 * included (their echo suffers from the flood as much as anyone's).
 */

import * as fs from 'node:fs';

/**
 * Bytes a second a paced terminal may produce beyond its burst: ~1,600 lines
 * of 80 columns, more than anyone reads. (512 KiB: five `yes` floods still
 * took quiet students' echo p99 to 31-52 ms; 128 KiB: 9-13 ms.)
 */
export const PACE_RATE_BYTES = 128 * 1024;
/** Output that never waits: a screenful of anything, a long `ls`, a small file. */
export const PACE_BURST_BYTES = 256 * 1024;
/** The host counts as busy from this fraction of all its CPUs' time. */
export const BUSY_FRACTION = 0.75;
/** Input within this long makes a terminal "someone typing". */
const TYPING_MS = 2_000;
/** Once contended, it stays so this long (pacing itself makes the host look idle). */
const CONTENDED_MS = 30_000;
/** The host's CPU counters are read at most this often. */
const SAMPLE_MS = 250;
/** How often an interrupt may forgive a share's debt, and what it may then produce at once. */
const FORGIVE_MS = 2_000;
const ANSWER_BYTES = 4096;
/** A paced pty waits at least this long (a pause per 4 KiB read would churn). */
const MIN_WAIT_MS = 20;

export interface PacerOptions {
  rateBytes?: number;
  burstBytes?: number;
  /** The busy fraction of all CPUs since the last call, undefined if unknown (tests: a stub). */
  hostBusy?: () => number | undefined;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** When an interrupt last forgave its debt (forgive()). */
  forgivenAt?: number;
}

export class OutputPacer {
  private readonly rate: number;
  private readonly burst: number;
  private readonly hostBusy: () => number | undefined;
  private readonly now: () => number;
  private readonly buckets = new WeakMap<object, Bucket>();
  /** Terminals typed into recently, and when. */
  private readonly typing = new Map<object, number>();
  private contendedUntil = -Infinity;
  private checkedAt = -Infinity;

  constructor(opts: PacerOptions = {}) {
    this.rate = opts.rateBytes ?? PACE_RATE_BYTES;
    this.burst = opts.burstBytes ?? PACE_BURST_BYTES;
    this.hostBusy = opts.hostBusy ?? hostCpuBusy();
    this.now = opts.now ?? (() => performance.now());
  }

  /** Someone typed into `terminal`. */
  noteInput(terminal: object): void {
    const t = this.now();
    this.typing.set(terminal, t);
    // Stale entries also go when a flood asks (contended()); this bounds
    // the map when none does.
    if (this.typing.size > 256) this.pruneTyping(t);
  }

  /**
   * The student interrupted what floods `share` (^C, ^Z, ^\): its debt is
   * dropped and it may produce ANSWER_BYTES at once, so the shell's answer
   * (the tty flushed the flood's unread output) shows now instead of after
   * the wait (up to 0.5 s for a 64 KiB read at RATE). What follows is paced
   * again. At most once per FORGIVE_MS per share: a flood that ignores ^C
   * (`trap '' INT`) with ^C sent in a loop gains one read per interval.
   */
  forgive(share: object): boolean {
    const b = this.buckets.get(share);
    const t = this.now();
    if (!b || t - (b.forgivenAt ?? -Infinity) < FORGIVE_MS) return false;
    b.forgivenAt = t;
    b.tokens = Math.max(b.tokens, ANSWER_BYTES);
    return true;
  }

  /** `terminal` ended. */
  forget(terminal: object): void {
    this.typing.delete(terminal);
  }

  /**
   * `terminal` just produced `bytes`, counted against `share`: how many ms
   * its pty must wait before it is read again (0: at once).
   */
  charge(terminal: object, share: object, bytes: number): number {
    const t = this.now();
    let b = this.buckets.get(share);
    if (!b) {
      b = { tokens: this.burst, at: t };
      this.buckets.set(share, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.rate) / 1000);
    b.at = t;
    b.tokens -= bytes;
    if (b.tokens >= 0) return 0;
    if (!this.contended(terminal, t)) {
      b.tokens = 0; // unpaced: a flood does not bank a debt for later
      return 0;
    }
    return Math.max(MIN_WAIT_MS, (-b.tokens / this.rate) * 1000);
  }

  private pruneTyping(t: number): void {
    for (const [k, at] of this.typing) if (t - at > TYPING_MS) this.typing.delete(k);
  }

  /** Whether the host is busy and a terminal other than `terminal` is being typed into. */
  private contended(terminal: object, t: number): boolean {
    this.pruneTyping(t);
    let other = false;
    for (const k of this.typing.keys()) if (k !== terminal) other = true;
    if (!other) return false;
    if (t < this.contendedUntil) return true;
    if (t - this.checkedAt < SAMPLE_MS) return false;
    this.checkedAt = t;
    const busy = this.hostBusy();
    if (busy === undefined || busy < BUSY_FRACTION) return false;
    this.contendedUntil = t + CONTENDED_MS;
    return true;
  }
}

/**
 * The busy fraction of all CPUs between two calls, from /proc/stat's `cpu`
 * line (busy = all but idle and iowait): the whole host's, also when the
 * server itself runs under a CPU limit. Undefined on the first call, where
 * /proc/stat cannot be read, and when the last call is older than `maxAgeMs`
 * (a busy spell long past says nothing about now: that call is the new
 * baseline).
 */
export function hostCpuBusy(
  read = () => readCpuLine(),
  now = () => performance.now(),
  maxAgeMs = 4 * SAMPLE_MS,
): () => number | undefined {
  let last: { busy: number; total: number; at: number } | undefined;
  return () => {
    const cur = read();
    if (!cur) return undefined;
    const at = now();
    const prev = last;
    last = { ...cur, at };
    if (!prev || at - prev.at > maxAgeMs || cur.total <= prev.total) return undefined;
    return (cur.busy - prev.busy) / (cur.total - prev.total);
  };
}

function readCpuLine(): { busy: number; total: number } | undefined {
  try {
    return parseCpuLine(fs.readFileSync('/proc/stat', 'utf8'));
  } catch {
    return undefined;
  }
}

/** `cpu  user nice system idle iowait irq softirq steal ...` (USER_HZ ticks). */
export function parseCpuLine(stat: string): { busy: number; total: number } | undefined {
  const line = stat.split('\n', 1)[0] ?? '';
  if (!line.startsWith('cpu ')) return undefined;
  const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (v.length < 5 || v.some((x) => !Number.isFinite(x))) return undefined;
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/**
 * How late the event loop runs, for /healthz: every terminal, socket and
 * request of a class shares this one loop, so its delay is the first thing
 * to read when students report lag. Over the last full minute (and the
 * current one until a minute has passed since the start).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

const RESOLUTION_MS = 10;

export interface LoopDelay {
  /** Milliseconds, over `windowS` seconds. */
  p50: number;
  p99: number;
  max: number;
  windowS: number;
}

export class LoopDelayMonitor {
  // 10 ms resolution: a timer wakes the loop 100 times a second, not 1000.
  private readonly h: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private last: LoopDelay | undefined;
  private since = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(windowMs = 60_000) {
    this.h.enable();
    this.timer = setInterval(() => {
      this.last = this.read();
      this.h.reset();
      this.since = Date.now();
    }, windowMs);
    this.timer.unref();
  }

  /** The last full window, or the current one while there is none. */
  stats(): LoopDelay {
    return this.last ?? this.read();
  }

  stop(): void {
    clearInterval(this.timer);
    this.h.disable();
  }

  private read(): LoopDelay {
    // The histogram holds the time between its timer's wake-ups (ns): the
    // 10 ms it asked for plus the delay.
    const ms = (ns: number) => Math.max(0, Math.round((ns - RESOLUTION_MS * 1e6) / 1e4) / 100);
    const n = this.h.count > 0;
    return {
      p50: n ? ms(this.h.percentile(50)) : 0,
      p99: n ? ms(this.h.percentile(99)) : 0,
      max: n ? ms(this.h.max) : 0,
      windowS: Math.round((Date.now() - this.since) / 1000),
    };
  }
}

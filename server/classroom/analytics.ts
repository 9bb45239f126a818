/**
 * Per lab and step, how a class did (docs/classroom.md#analytics), computed
 * from the events the lab engine already records (check-pass, check-fail,
 * hint, skip, reset-step, reset-lab). Pure: the caller hands in the events.
 *
 * A student's lab starts over at their last `reset-lab`: what they did
 * before it is not counted (their progress was forgotten too).
 */
import type { StepAnalytics } from '../protocol/index';

export interface LabEvent {
  step: string;
  kind: string;
  detail: unknown;
  at: number;
}

/** The wire type (protocol): what the dashboard shows and the export writes. */
export type StepFigures = StepAnalytics;

export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Events since the student's last reset of the lab. */
function sinceReset(events: LabEvent[]): LabEvent[] {
  let from = 0;
  events.forEach((e, i) => {
    if (e.kind === 'reset-lab') from = i + 1;
  });
  return events.slice(from);
}

export function stepAnalytics(
  lab: string,
  steps: readonly string[],
  /** Each student's events in the lab, oldest first. */
  perStudent: LabEvent[][],
): StepFigures[] {
  const runs = perStudent.map(sinceReset).filter((evs) => evs.length > 0);
  const started = runs.length;
  const acc = steps.map((step) => ({
    step,
    passed: 0,
    skipped: 0,
    hinted: 0,
    times: [] as number[],
    checks: 0,
  }));
  for (const evs of runs) {
    const first = (evs[0] as LabEvent).at;
    /** When each step was left behind (first pass or skip): the next one is reached then. */
    let reached = first;
    acc.forEach((a) => {
      const mine = evs.filter((e) => e.step === a.step);
      const passIdx = mine.findIndex((e) => e.kind === 'check-pass');
      const skip = mine.find((e) => e.kind === 'skip');
      if (mine.some((e) => e.kind === 'hint' && (e.detail as { hint?: unknown })?.hint != null))
        a.hinted++;
      if (passIdx >= 0) {
        const pass = mine[passIdx] as LabEvent;
        a.passed++;
        a.checks += mine
          .slice(0, passIdx + 1)
          .filter((e) => e.kind === 'check-pass' || e.kind === 'check-fail').length;
        a.times.push(Math.max(0, pass.at - reached));
        reached = Math.max(reached, pass.at);
      } else if (skip) {
        a.skipped++;
        reached = Math.max(reached, skip.at);
      }
    });
  }
  return acc.map((a) => {
    const med = median(a.times);
    return {
      lab,
      step: a.step,
      started,
      passed: a.passed,
      skipped: a.skipped,
      completion: started ? a.passed / started : 0,
      ...(med !== undefined ? { medianMs: Math.round(med) } : {}),
      ...(a.passed ? { checksPerPass: Math.round((a.checks / a.passed) * 100) / 100 } : {}),
      hinted: a.hinted,
    };
  });
}

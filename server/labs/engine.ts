/**
 * The step engine: per student and lab, the current step, latched passes,
 * recorded values ($STEP_<id>_OUT), attempts and hints shown - persisted in
 * SQLite, so a reload or a server restart loses nothing. Checks and hint
 * scripts run in the student's sandbox through the join path.
 */
import type { LabProgress, StepProgress } from '../protocol/index';
import type { CgroupMode, Sandbox } from '../sandbox/index';
import type { Store } from '../store/store';
import { RequestError } from '../util/errors';
import { effectiveStep, type LoadedLab } from './loader';
import { clipLine, MAX_MESSAGE_CHARS, runScript, stepEnv } from './runtime';
import type { Step } from './schema';

/** The engine's state is exactly what the lab API sends (server/protocol). */
export type StepState = StepProgress;
export type LabState = LabProgress;

export interface CheckResult {
  passed: boolean;
  /** True when an earlier pass is kept although this run failed. */
  latched: boolean;
  message: string;
  state: LabState;
}

const fresh = (): StepState => ({
  passed: false,
  skipped: false,
  message: '',
  attempts: 0,
  hintsShown: 0,
});

export class LabEngine {
  private readonly labs: () => Map<string, LoadedLab>;

  /** `labs` may be a function so a reloading catalog (serve --dev) is seen at once. */
  constructor(
    private readonly store: Store,
    labs: Map<string, LoadedLab> | (() => Map<string, LoadedLab>),
    private readonly mode: CgroupMode,
  ) {
    this.labs = typeof labs === 'function' ? labs : () => labs;
  }

  private lab(id: string): LoadedLab {
    const l = this.labs().get(id);
    if (!l) throw new RequestError('not-found', `no lab with id ${JSON.stringify(id)}`);
    return l;
  }

  private step(l: LoadedLab, stepId: string): { step: Step; index: number } {
    const index = l.lab.steps.findIndex((s) => s.id === stepId);
    if (index < 0)
      throw new RequestError(
        'not-found',
        `lab ${l.lab.metadata.id} has no step ${JSON.stringify(stepId)}`,
      );
    return { step: effectiveStep(l.lab.steps[index] as Step, this.mode), index };
  }

  state(owner: string, labId: string): LabState {
    const l = this.lab(labId);
    const saved = this.store.getProgress(owner, labId) as LabState | undefined;
    const st: LabState = saved ?? { lab: labId, current: 0, steps: {} };
    for (const s of l.lab.steps) st.steps[s.id] ??= fresh();
    return st;
  }

  /** The states of many students in many labs at once (one query), keyed `owner\0lab`. */
  statesOf(owners: string[], labIds: string[]): Map<string, LabState> {
    const saved = this.store.progressOfMany(owners, labIds);
    const out = new Map<string, LabState>();
    for (const labId of labIds) {
      const l = this.labs().get(labId);
      if (!l) continue;
      for (const owner of owners) {
        const k = `${owner}\0${labId}`;
        const st = (saved.get(k) as LabState | undefined) ?? { lab: labId, current: 0, steps: {} };
        for (const s of l.lab.steps) st.steps[s.id] ??= fresh();
        out.set(k, st);
      }
    }
    return out;
  }

  private env(st: LabState): Record<string, string> {
    // A step skipped with its solution applied has a value too.
    const passed = Object.entries(st.steps).filter(
      ([, s]) => s.passed || (s.skipped && (s.value ?? s.message)),
    );
    return stepEnv(new Map(passed.map(([id, s]) => [id, s.value ?? s.message])));
  }

  private advance(l: LoadedLab, st: LabState): void {
    const next = l.lab.steps.findIndex((s) => !st.steps[s.id]?.passed && !st.steps[s.id]?.skipped);
    st.current = next < 0 ? l.lab.steps.length : next;
  }

  /** Runs the step's check; a pass is latched (the state may change later: loops end, shells exit). */
  async check(
    owner: string,
    sandbox: Sandbox,
    labId: string,
    stepId: string,
    answer?: string,
  ): Promise<CheckResult> {
    const l = this.lab(labId);
    const { step } = this.step(l, stepId);
    const st = this.state(owner, labId);
    const ss = st.steps[stepId] as StepState;
    if (!step.check) throw new RequestError('invalid', `step ${stepId} has no check`);
    if (step.check.input && !answer?.trim())
      throw new RequestError(
        'invalid',
        `step ${stepId} needs an answer: ${step.check.input.prompt}`,
      );
    const r = await runScript(sandbox, step.check.script, {
      timeoutS: step.check.timeout,
      env: step.check.input ? { ...this.env(st), ANSWER: (answer ?? '').trim() } : this.env(st),
      trusted: true,
      lib: l.lab.lib,
    });
    ss.attempts++;
    const passed = r.code === 0;
    const latched = !passed && ss.passed;
    const message = r.timedOut
      ? `The check took longer than ${step.check.timeout} s and was stopped.`
      : r.message;
    if (passed && !ss.passed) {
      ss.passed = true;
      ss.message = r.message;
      if (r.value !== undefined) ss.value = r.value;
      else delete ss.value;
      ss.passedAt = Date.now();
    }
    this.advance(l, st);
    this.store.saveProgress(owner, labId, st);
    this.store.addEvent(owner, labId, stepId, passed ? 'check-pass' : 'check-fail', {
      message,
      attempt: ss.attempts,
      ...(answer !== undefined ? { answer: clipLine(answer, MAX_MESSAGE_CHARS) } : {}),
    });
    return {
      passed: passed || ss.passed,
      latched,
      message: latched ? ss.message : message,
      state: st,
    };
  }

  /**
   * A Hint press (HintResponse). State hints (scripts) run on every press,
   * all of them, against the sandbox as it is now: a hint written for a
   * mistake shows when the mistake is there, however early Hint was
   * pressed before. What they say is shown when it differs from what they
   * said last; otherwise the next text hint is revealed; otherwise what
   * they say is repeated. Only a press that showed something counts.
   */
  async hint(
    owner: string,
    sandbox: Sandbox,
    labId: string,
    stepId: string,
  ): Promise<{ hint: string | undefined; kind?: 'state' | 'text'; shown: number; total: number }> {
    const l = this.lab(labId);
    const { step } = this.step(l, stepId);
    const st = this.state(owner, labId);
    const ss = st.steps[stepId] as StepState;
    const texts = step.hints.flatMap((h) => ('text' in h ? [h.text] : []));
    const said: string[] = [];
    for (const h of step.hints) {
      if ('text' in h) continue;
      const r = await runScript(sandbox, h.script, {
        timeoutS: 10,
        env: this.env(st),
        trusted: true,
        lib: l.lab.lib,
      });
      // `[ cond ] && echo …` as a last line ends 1 when it says nothing:
      // 0 and 1 are answers, more (a syntax error is 2) or a timeout is not.
      const out = r.output.trim();
      if (r.code <= 1 && !r.timedOut && out) said.push(out);
    }
    const now = said.join('\n');
    let hint: string | undefined;
    let kind: 'state' | 'text' | undefined;
    const revealed = ss.textHintsShown ?? 0;
    if (now && now !== ss.lastStateHint) {
      hint = now;
      kind = 'state';
      ss.lastStateHint = now;
      ss.hintsShown++;
    } else if (revealed < texts.length) {
      hint = texts[revealed];
      kind = 'text';
      ss.textHintsShown = revealed + 1;
      ss.hintsShown++;
    } else if (now) {
      hint = now;
      kind = 'state';
    }
    this.store.saveProgress(owner, labId, st);
    this.store.addEvent(owner, labId, stepId, 'hint', { hint: hint ?? null });
    return {
      hint,
      ...(kind ? { kind } : {}),
      shown: ss.textHintsShown ?? 0,
      total: texts.length,
    };
  }

  /**
   * Runs the step's reference solution in the student's sandbox (for a skip
   * that should leave the sandbox as the step would have): as the student's
   * own commands run, not trusted. It was written to follow the earlier
   * steps' solutions, so after a student's own way it may fail: say so.
   */
  async applySolution(
    owner: string,
    sandbox: Sandbox,
    labId: string,
    stepId: string,
  ): Promise<{ ok: boolean; output: string; value?: string }> {
    const l = this.lab(labId);
    const { step } = this.step(l, stepId);
    if (!step.solution) return { ok: false, output: 'this step has no solution to apply' };
    const env = this.env(this.state(owner, labId));
    const r = await runScript(sandbox, step.solution, {
      timeoutS: 60,
      env,
      trusted: false,
      lib: l.lab.lib,
    });
    const output = clipLine(r.output.trim(), MAX_MESSAGE_CHARS);
    if (r.code !== 0 || !step.check) return { ok: r.code === 0, output };
    // The value later steps read ($STEP_<id>_OUT) is what the check says now.
    const c = await runScript(sandbox, step.check.script, {
      timeoutS: step.check.timeout,
      env: step.check.input ? { ...env, ANSWER: r.message } : env,
      trusted: true,
      lib: l.lab.lib,
    });
    return c.code === 0 ? { ok: true, output, value: c.value ?? c.message } : { ok: true, output };
  }

  /**
   * Marks a step skipped (not passed). `value`: what its check said after
   * the solution was applied for the student, which later steps read as
   * $STEP_<id>_OUT like a pass's message.
   */
  skip(owner: string, labId: string, stepId: string, applied?: boolean, value?: string): LabState {
    const l = this.lab(labId);
    this.step(l, stepId);
    const st = this.state(owner, labId);
    const ss = st.steps[stepId] as StepState;
    ss.skipped = true;
    if (value !== undefined) ss.value = value;
    this.advance(l, st);
    this.store.saveProgress(owner, labId, st);
    this.store.addEvent(owner, labId, stepId, 'skip', applied !== undefined ? { applied } : {});
    return st;
  }

  /**
   * Records a restart at `stepId` in a sandbox whose earlier steps were
   * replayed (transport/lab-api.ts restartAt): the
   * steps before it keep a pass the student earned (the rest count as done
   * for them, i.e. skipped) and take the new sandbox's values; it and the
   * steps after it start over.
   */
  restarted(owner: string, labId: string, stepId: string, values: Map<string, string>): LabState {
    const l = this.lab(labId);
    const { index } = this.step(l, stepId);
    const st = this.state(owner, labId);
    l.lab.steps.forEach((s, i) => {
      if (i >= index) {
        st.steps[s.id] = fresh();
        return;
      }
      const ss = st.steps[s.id] as StepState;
      if (!ss.passed) ss.skipped = true;
      const v = values.get(s.id);
      if (v !== undefined) ss.value = v;
    });
    this.advance(l, st);
    this.store.saveProgress(owner, labId, st);
    this.store.addEvent(owner, labId, stepId, 'restart-step', { before: index });
    return st;
  }

  resetStep(owner: string, labId: string, stepId: string): LabState {
    const l = this.lab(labId);
    this.step(l, stepId);
    const st = this.state(owner, labId);
    st.steps[stepId] = fresh();
    this.advance(l, st);
    this.store.saveProgress(owner, labId, st);
    this.store.addEvent(owner, labId, stepId, 'reset-step', {});
    return st;
  }

  /**
   * Records that the student opened the lab, once per run of it (the first
   * time, and the first time after a reset): where "time on a step" starts
   * for the instructor's figures, before any check.
   */
  opened(owner: string, labId: string): void {
    const events = this.store.events(owner, labId);
    const last = events.at(-1);
    if (last === undefined || last.kind === 'reset-lab')
      this.store.addEvent(owner, labId, '', 'open', {});
  }

  /** Forgets all progress; the caller gives the student a fresh sandbox. */
  resetLab(owner: string, labId: string): LabState {
    this.lab(labId);
    this.store.deleteProgress(owner, labId);
    this.store.addEvent(owner, labId, '', 'reset-lab', {});
    return this.state(owner, labId);
  }
}

/**
 * `underlay test`: proves every lab works before a student sees it. For each
 * lab, in a fresh sandbox: setup; then per step: the check must FAIL, each
 * near-miss is applied and the check must still FAIL, the solution is applied
 * and the check must PASS. A lab whose host requirements are not met here
 * (e.g. the cgroup v2 variant on a v1 host) is reported as not applicable,
 * never as passed.
 */
import { SandboxError, type CgroupMode, type Sandbox, type SandboxManager } from '../sandbox/index';
import { RequestError } from '../util/errors';
import { effectiveStep, type LoadedLab } from './loader';
import { labSandboxOptions, notApplicable, prepareSandbox, runScript, stepEnv } from './runtime';
import type { Lab } from './schema';

export interface PhaseResult {
  phase: string;
  ok: boolean;
  ms: number;
  detail: string;
}
export interface StepResult {
  id: string;
  title: string;
  ok: boolean;
  ms: number;
  phases: PhaseResult[];
}
export interface LabResult {
  id: string;
  file: string;
  run: number;
  status: 'passed' | 'failed' | 'not-applicable';
  reason?: string;
  ms: number;
  steps: StepResult[];
}

export interface TestOptions {
  mode: CgroupMode;
  /** Only this step (earlier steps are solved, not asserted). */
  onlyStep?: string;
  onPhase?: (lab: string, step: string, phase: PhaseResult) => void;
}

export async function testLab(
  loaded: LoadedLab,
  mgr: SandboxManager,
  run: number,
  opts: TestOptions,
): Promise<LabResult> {
  const { lab } = loaded;
  const t0 = Date.now();
  const result: LabResult = {
    id: lab.metadata.id,
    file: loaded.file,
    run,
    status: 'passed',
    ms: 0,
    steps: [],
  };
  const na = notApplicable(lab, opts.mode);
  if (na) return { ...result, status: 'not-applicable', reason: na };
  let sb: Sandbox | undefined;
  try {
    sb = await mgr.create({ ...labSandboxOptions(lab), ownerKind: 'cli' });
    const outs = new Map<string, string>();
    if (lab.setup || lab.sandbox.files.length) {
      const s0 = Date.now();
      let detail = '';
      try {
        await prepareSandbox(loaded, sb);
      } catch (err) {
        detail = err instanceof Error ? err.message : String(err);
      }
      const phase = { phase: 'setup', ok: !detail, ms: Date.now() - s0, detail };
      opts.onPhase?.(lab.metadata.id, '(setup)', phase);
      if (!phase.ok) {
        result.steps.push({
          id: '(setup)',
          title: 'setup',
          ok: false,
          ms: phase.ms,
          phases: [phase],
        });
        result.status = 'failed';
        return result;
      }
    }
    const target = opts.onlyStep ? lab.steps.findIndex((s) => s.id === opts.onlyStep) : -1;
    if (opts.onlyStep && target < 0)
      throw new RequestError('not-found', `no step "${opts.onlyStep}" in lab ${lab.metadata.id}`);
    for (let i = 0; i < lab.steps.length; i++) {
      const step = effectiveStep(lab.steps[i] as Lab['steps'][number], opts.mode);
      const assertPhases = target < 0 || i === target;
      const st: StepResult = { id: step.id, title: step.title, ok: true, ms: 0, phases: [] };
      const s0 = Date.now();
      const phase = async (name: string, fn: () => Promise<{ ok: boolean; detail: string }>) => {
        const p0 = Date.now();
        const r = await fn();
        const ph = { phase: name, ok: r.ok, ms: Date.now() - p0, detail: r.detail };
        st.phases.push(ph);
        opts.onPhase?.(lab.metadata.id, step.id, ph);
        if (!ph.ok) st.ok = false;
        return r.ok;
      };
      const check = step.check as NonNullable<typeof step.check>;
      const env = () => stepEnv(outs);
      // Knowledge checks: the answer is the last stdout line of what was applied.
      const withAnswer = (answer: string) => (check.input ? { ...env(), ANSWER: answer } : env());
      const mustFail =
        (why: string, answer = '') =>
        async () => {
          const r = await runScript(sb as Sandbox, check.script, {
            timeoutS: check.timeout,
            env: withAnswer(answer),
            trusted: true,
            lib: lab.lib,
          });
          // A check that hangs is broken, not failing: a student would wait
          // out its timeout at every press.
          if (r.timedOut)
            return {
              ok: false,
              detail: `the check did not answer ${why}: ${r.output.trim().split('\n').slice(-3).join(' / ')}`,
            };
          return r.code !== 0
            ? { ok: true, detail: r.message }
            : {
                ok: false,
                detail: `the check PASSED ${why} (message: ${JSON.stringify(r.message)}); it cannot tell the student's work from ${why === 'before the solution' ? 'a fresh sandbox' : 'this mistake'}`,
              };
        };
      // State hints are run in the states a student meets them in: they must
      // not error anywhere, and after a near miss one of them must say
      // something (that mistake is what they are written for).
      const scriptHints = step.hints.flatMap((h, n) =>
        'script' in h ? [{ n, script: h.script }] : [],
      );
      const hintsSay =
        (where: string, mustSay: boolean) => async (): Promise<{ ok: boolean; detail: string }> => {
          const said: string[] = [];
          for (const h of scriptHints) {
            const r = await runScript(sb as Sandbox, h.script, {
              timeoutS: 10,
              env: env(),
              trusted: true,
              lib: lab.lib,
            });
            // 0 and 1 are answers (`[ cond ] && echo …` ends 1 when silent); 2+ is an error.
            if (r.code > 1 || r.timedOut)
              return {
                ok: false,
                detail: `hint ${h.n + 1} failed ${where} (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.output.trim().split('\n').slice(-3).join(' / ')}`,
              };
            if (r.output.trim()) said.push(r.output.trim().split('\n')[0] as string);
          }
          if (mustSay && said.length === 0)
            return {
              ok: false,
              detail: `no state hint says anything ${where}: write one for this mistake (it runs on every Hint press)`,
            };
          return { ok: true, detail: said.join(' / ') };
        };
      if (assertPhases) {
        await phase('fails before', mustFail('before the solution'));
        if (scriptHints.length) await phase('hints before', hintsSay('before the solution', false));
        for (const nm of step.nearMisses) {
          await phase(`near miss: ${nm.name}`, async () => {
            const a = await runScript(sb as Sandbox, nm.script, {
              timeoutS: 60,
              env: env(),
              trusted: false,
              lib: lab.lib,
            });
            if (a.code !== 0)
              return {
                ok: false,
                detail: `applying the near miss failed (exit ${a.code}): ${a.output}`,
              };
            const r = await mustFail(`after the near miss "${nm.name}"`, a.message)();
            if (r.ok && nm.says && !r.detail.toLowerCase().includes(nm.says.toLowerCase()))
              return {
                ok: false,
                detail: `the check failed, but its message does not say ${JSON.stringify(nm.says)} (the near miss's \`says\`): ${JSON.stringify(r.detail)}`,
              };
            return r;
          });
          if (scriptHints.length)
            await phase(
              `hints after: ${nm.name}`,
              hintsSay(`after the near miss "${nm.name}"`, true),
            );
        }
      }
      let answer = '';
      await phase('solution', async () => {
        const r = await runScript(sb as Sandbox, step.solution as string, {
          timeoutS: 60,
          env: env(),
          trusted: false,
          lib: lab.lib,
        });
        answer = r.message;
        return r.code === 0
          ? { ok: true, detail: '' }
          : { ok: false, detail: `the solution exited ${r.code}: ${r.output}` };
      });
      await phase('passes after', async () => {
        const r = await runScript(sb as Sandbox, check.script, {
          timeoutS: check.timeout,
          env: withAnswer(answer),
          trusted: true,
          lib: lab.lib,
        });
        if (r.code === 0) outs.set(step.id, r.value ?? r.message);
        return r.code === 0
          ? { ok: true, detail: r.message }
          : {
              ok: false,
              detail: `the check FAILED after the solution (exit ${r.code}): ${r.output}`,
            };
      });
      st.ms = Date.now() - s0;
      result.steps.push(st);
      if (!st.ok) {
        result.status = 'failed';
        break; // later steps build on this one
      }
      if (i === target) break;
    }
  } catch (err) {
    result.status = 'failed';
    result.steps.push(sandboxFailure(err));
  } finally {
    if (sb) await mgr.teardownOrQuarantine(sb);
    result.ms = Date.now() - t0;
  }
  return result;
}

/** A failure outside any step (the sandbox, the image, a bad --only) as a report row, with its hint. */
export function sandboxFailure(err: unknown): StepResult {
  const e =
    err instanceof SandboxError || err instanceof RequestError
      ? err
      : SandboxError.wrap('lab run', err);
  const phase = e instanceof SandboxError && e.step ? e.step : 'sandbox';
  return {
    id: '(sandbox)',
    title: 'sandbox',
    ok: false,
    ms: 0,
    phases: [{ phase, ok: false, ms: 0, detail: e.message + (e.hint ? ` (hint: ${e.hint})` : '') }],
  };
}

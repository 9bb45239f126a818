/**
 * `underlay test`: proves every lab works before a student sees it. For each
 * lab, in a fresh sandbox: setup; then per step: the check must FAIL, each
 * near-miss is applied and the check must still FAIL, the solution is applied
 * and the check must PASS. A lab whose host requirements are not met here
 * (e.g. the cgroup v2 variant on a v1 host) is reported as not applicable,
 * never as passed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSize } from '../config';
import type { CgroupMode } from '../sandbox/cgroups';
import { SandboxError } from '../sandbox/errors';
import type { Sandbox, SandboxManager } from '../sandbox/sandbox';
import { effectiveStep, type LoadedLab } from './loader';
import type { Lab } from './schema';

export const CHECK_LIB = fs.readFileSync(
  [
    path.join(__dirname, 'check-lib.sh'),
    path.resolve(__dirname, '..', '..', '..', 'server', 'labs', 'check-lib.sh'),
  ].find((p) => fs.existsSync(p)) as string,
  'utf8',
);

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

/** The env a script sees: earlier steps' messages as $STEP_<id>_OUT. */
function stepEnv(outs: Map<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [id, out] of outs) env[`STEP_${id.replace(/-/g, '_')}_OUT`] = out;
  return env;
}

export async function runScript(
  sb: Sandbox,
  script: string,
  opts: { timeoutS: number; env: Record<string, string> },
): Promise<{ code: number; message: string; output: string; timedOut: boolean }> {
  const r = await sb.exec(['bash', '-c', `${CHECK_LIB}\n${script}`], {
    timeoutMs: opts.timeoutS * 1000,
    maxBytes: 256 * 1024,
    env: opts.env,
  });
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  // The tail of the output, bounded in lines and in characters (one line can be megabytes).
  let output = `${r.stdout}${r.stderr}`.split('\n').slice(-15).join('\n').trim();
  if (output.length > 2000) output = `…${output.slice(-2000)}`;
  return {
    code: r.timedOut ? 124 : r.code,
    message: lines.at(-1) ?? '',
    output:
      (r.timedOut ? `[killed after ${opts.timeoutS}s] ` : '') +
      (r.truncated ? '[output truncated] ' : '') +
      output,
    timedOut: r.timedOut,
  };
}

const MAX_FILES_BYTES = 8 * 1024 * 1024;

/** The lab's `sandbox.files` as (sandbox path, mode, content) triples; bounded in total size. */
export function labFiles(loaded: LoadedLab): { to: string; mode: string; data: Buffer }[] {
  const out: { to: string; mode: string; data: Buffer }[] = [];
  let total = 0;
  const add = (src: string, dst: string, mode: string | undefined) => {
    const st = fs.statSync(src);
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(src).sort())
        add(path.join(src, e), path.posix.join(dst, e), mode);
      return;
    }
    const data = fs.readFileSync(src);
    total += data.length;
    if (total > MAX_FILES_BYTES)
      throw new SandboxError(`sandbox.files of ${loaded.lab.metadata.id} exceed 8 MiB`, {
        code: 'EFBIG',
        step: 'lab-files',
      });
    out.push({ to: dst, mode: mode ?? (st.mode & 0o7777).toString(8), data });
  };
  for (const f of loaded.lab.sandbox.files) add(path.resolve(loaded.dir, f.from), f.to, f.mode);
  return out;
}

/** Lays the lab's files into a fresh sandbox and runs its setup; throws with the output on failure. */
export async function prepareSandbox(loaded: LoadedLab, sb: Sandbox): Promise<void> {
  const { lab } = loaded;
  // One exec per file, the content on stdin (argv would hit E2BIG on big files).
  for (const f of labFiles(loaded)) {
    const r = await sb.exec(
      [
        'sh',
        '-c',
        'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
        'sh',
        f.to,
        f.mode,
      ],
      { input: f.data, timeoutMs: 30_000 },
    );
    if (r.code !== 0)
      throw new SandboxError(
        `copying ${f.to} into the sandbox failed (exit ${r.code}): ${r.stderr.trim()}`,
        {
          step: 'lab-files',
        },
      );
  }
  if (lab.setup) {
    const r = await runScript(sb, lab.setup, { timeoutS: 60, env: {} });
    if (r.code !== 0)
      throw new SandboxError(`the lab's setup exited ${r.code}: ${r.output}`, {
        step: 'lab-setup',
        hint: 'Run `underlay test` on this lab to see the setup fail in isolation.',
      });
  }
}

/** Sandbox options for a lab. */
export function labSandboxOptions(lab: Lab) {
  return {
    hostname: lab.sandbox.hostname,
    packages: lab.sandbox.packages,
    limits: {
      ...(lab.sandbox.memory ? { memoryBytes: parseSize(lab.sandbox.memory) as number } : {}),
      ...(lab.sandbox.pids ? { pids: lab.sandbox.pids } : {}),
      ...(lab.sandbox.cpus ? { cpus: lab.sandbox.cpus } : {}),
    },
  };
}

export function notApplicable(lab: Lab, mode: CgroupMode): string | undefined {
  if (lab.requires.cgroup !== 'any' && lab.requires.cgroup !== mode) {
    return `needs cgroup ${lab.requires.cgroup}; this host runs cgroup ${mode}`;
  }
  if (lab.requires.kernel) {
    const [a, b] = lab.requires.kernel.split('.').map(Number) as [number, number];
    const m = /^(\d+)\.(\d+)/.exec(os.release());
    if (m && (Number(m[1]) < a || (Number(m[1]) === a && Number(m[2]) < b)))
      return `needs Linux >= ${lab.requires.kernel}; this host runs ${os.release()}`;
  }
  return undefined;
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
      throw new SandboxError(`no step "${opts.onlyStep}" in lab ${lab.metadata.id}`, {
        code: 'ENOENT',
      });
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
          });
          return r.code !== 0
            ? { ok: true, detail: r.message }
            : {
                ok: false,
                detail: `the check PASSED ${why} (message: ${JSON.stringify(r.message)}); it cannot tell the student's work from ${why === 'before the solution' ? 'a fresh sandbox' : 'this mistake'}`,
              };
        };
      if (assertPhases) {
        await phase('fails before', mustFail('before the solution'));
        for (const nm of step.nearMisses) {
          await phase(`near miss: ${nm.name}`, async () => {
            const a = await runScript(sb as Sandbox, nm.script, { timeoutS: 60, env: env() });
            if (a.code !== 0)
              return {
                ok: false,
                detail: `applying the near miss failed (exit ${a.code}): ${a.output}`,
              };
            return mustFail(`after the near miss "${nm.name}"`, a.message)();
          });
        }
      }
      let answer = '';
      await phase('solution', async () => {
        const r = await runScript(sb as Sandbox, step.solution as string, {
          timeoutS: 60,
          env: env(),
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
        });
        if (r.code === 0) outs.set(step.id, r.message);
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
    const e = err instanceof SandboxError ? err : SandboxError.wrap('lab run', err);
    result.steps.push({
      id: '(sandbox)',
      title: 'sandbox',
      ok: false,
      ms: 0,
      phases: [
        {
          phase: e.step || 'sandbox',
          ok: false,
          ms: 0,
          detail: e.message + (e.hint ? ` (hint: ${e.hint})` : ''),
        },
      ],
    });
  } finally {
    if (sb) await mgr.teardown(sb.record).catch(() => {});
    result.ms = Date.now() - t0;
  }
  return result;
}

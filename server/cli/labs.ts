/**
 * `underlay test`: every lab end to end in real sandboxes (or, with
 * --walkthrough, typed into real terminals), reported as pretty, TAP or JUnit.
 */
import * as fs from 'node:fs';
import { loadConfig, REPO_LABS } from '../config';
import { formatProblem, loadLabs, type LoadedLab } from '../labs/loader';
import { junit, pretty, summary, tap } from '../labs/reporters';
import { sandboxFailure, testLab, type LabResult } from '../labs/runner';
import { notApplicable } from '../labs/runtime';
import { walkLab } from '../labs/walkthrough';
import { detectCgroupMode, SandboxManager, type CgroupMode } from '../sandbox/index';
import { SessionManager } from '../sessions/session-manager';
import { Store } from '../store/store';
import { createLogger } from '../util/logger';

/** One walkthrough run as a LabResult, so the reporters and exit code work the same. */
async function walk(
  l: LoadedLab,
  sessions: SessionManager,
  mode: CgroupMode,
  run: number,
): Promise<LabResult> {
  const na = notApplicable(l.lab, mode);
  const base = { id: l.lab.metadata.id, file: l.file, run };
  if (na) return { ...base, status: 'not-applicable', reason: na, ms: 0, steps: [] };
  try {
    const w = await walkLab(l, sessions, mode, {
      onStep: (s) =>
        process.stderr.write(
          `    ${s.ok ? '✔' : '✖'} ${s.id}: typed and checked (${s.ms} ms)${s.ok ? '' : ` - ${s.detail.split('\n')[0]}`}\n`,
        ),
    });
    return {
      ...base,
      status: w.ok ? 'passed' : 'failed',
      ms: w.ms,
      steps: w.steps.map((s) => ({
        id: s.id,
        title: s.id,
        ok: s.ok,
        ms: s.ms,
        phases: [
          {
            phase: 'walkthrough',
            ok: s.ok,
            ms: s.ms,
            detail: s.ok ? '' : `${s.detail}\n${s.transcript}`,
          },
        ],
      })),
    };
  } catch (err) {
    return { ...base, status: 'failed', ms: 0, steps: [sandboxFailure(err)] };
  }
}

export async function test(
  paths: string[],
  opts: {
    reporter: string;
    repeat: number;
    only?: string;
    output?: string;
    /** Also write a JUnit report of the same run here. */
    junit?: string;
    walkthrough?: boolean;
  },
): Promise<number> {
  const { labs, problems } = loadLabs(paths.length ? paths : [REPO_LABS]);
  for (const p of problems) process.stderr.write(formatProblem(p) + '\n');
  const [onlyLab, onlyStep] = opts.only ? opts.only.split('/') : [];
  const selected = labs.filter((l) => !onlyLab || l.lab.metadata.id === onlyLab);
  if (onlyLab && selected.length === 0) {
    process.stderr.write(`underlay: no lab "${onlyLab}" in ${paths.join(' ') || 'labs/'}\n`);
    return 1;
  }
  const config = loadConfig();
  const mgr = new SandboxManager({ config, store: new Store(config.stateDir) });
  const mode = detectCgroupMode();
  const sessions = new SessionManager(mgr, createLogger('warn'));
  const results: LabResult[] = [];
  const t0 = Date.now();
  for (let run = 1; run <= opts.repeat; run++) {
    for (const l of selected) {
      process.stderr.write(
        `▶ ${l.lab.metadata.id}${opts.repeat > 1 ? ` (run ${run}/${opts.repeat})` : ''}\n`,
      );
      // A lab with cgroup variants is two labs to a student: the other
      // host mode's variant is reported as not applicable, never as passed.
      const other = mode === 'v1' ? 'v2' : 'v1';
      const variant = l.lab.steps.some((s) => s.variants?.[other] || s.variants?.[mode]);
      if (variant)
        results.push({
          id: `${l.lab.metadata.id} [cgroup ${other}]`,
          file: l.file,
          run,
          status: 'not-applicable',
          reason: `the cgroup ${other} variant needs a cgroup ${other} host; this host runs ${mode}`,
          ms: 0,
          steps: [],
        });
      if (opts.walkthrough) {
        results.push(await walk(l, sessions, mode, run));
        continue;
      }
      const r = await testLab(l, mgr, run, {
        mode,
        ...(onlyStep ? { onlyStep } : {}),
        onPhase: (_lab, step, p) =>
          process.stderr.write(
            // A near miss shows what the check told the student (what its `says` can match).
            `    ${p.ok ? '✔' : '✖'} ${step}: ${p.phase} (${p.ms} ms)${p.ok ? (p.phase.startsWith('near miss') && p.detail ? ` - says: ${p.detail.split('\n')[0]}` : '') : ` - ${p.detail.split('\n')[0]}`}\n`,
          ),
      });
      results.push(variant ? { ...r, id: `${r.id} [cgroup ${mode}]` } : r);
    }
  }
  const report =
    opts.reporter === 'tap'
      ? tap(results)
      : opts.reporter === 'junit'
        ? junit(results)
        : pretty(results);
  if (opts.output) fs.writeFileSync(opts.output, report + '\n');
  else process.stdout.write(report + '\n');
  if (opts.junit) fs.writeFileSync(opts.junit, junit(results) + '\n');
  const s = summary(results);
  process.stderr.write(
    `labs: ${s.passed} passed, ${s.failed} failed, ${s.na} not applicable (cgroup ${mode}) in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
  );
  mgr.store.close();
  return s.failed > 0 || problems.length > 0 ? 1 : 0;
}

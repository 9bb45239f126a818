/**
 * npm run bench:restart - what "Start step over" costs a student: the time
 * from the click to a fresh sandbox at the start of a step, whose earlier
 * steps' code blocks were typed into its terminals and checked. Per lab, a
 * restart at the first step (a fresh sandbox and nothing to replay) and at
 * the last step (everything before it replayed). Figures, not assertions.
 *
 *   node dist/test/bench/restart.bench.js [--runs 3] [--labs ns-pid,ns-net]
 */
import * as path from 'node:path';
import { loadLabs } from '../../server/labs/loader';
import { startServer } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { REPO } from '../helpers/env';

const argAt = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(argAt('runs') ?? 3);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const all = loadLabs([path.join(REPO, 'labs')]).labs.filter((l) => l.lab.metadata.listed);
  const wanted = argAt('labs')?.split(',');
  const labs = wanted ? all.filter((l) => wanted.includes(l.lab.metadata.id)) : all;
  const srv = await startServer();
  try {
    const rows: string[] = [];
    for (const l of labs) {
      const id = l.lab.metadata.id;
      const steps = l.lab.steps;
      const student = new CookieClient(srv.url);
      const start = await student.call('POST', `/api/labs/${id}/session`);
      if (start.status !== 200) {
        rows.push(`| ${id} | - | - | - | ${String(start.body.error)} |`);
        continue;
      }
      const time = async (step: string): Promise<number | string> => {
        const t0 = process.hrtime.bigint();
        const r = await student.call('POST', `/api/labs/${id}/steps/${step}/restart`);
        if (r.status !== 200) return String(r.body.error).slice(0, 80);
        return Number(process.hrtime.bigint() - t0) / 1e6;
      };
      const first: number[] = [];
      const last: number[] = [];
      let failed = '';
      for (let i = 0; i < RUNS && !failed; i++) {
        for (const [xs, step] of [
          [first, steps[0]?.id],
          [last, steps.at(-1)?.id],
        ] as [number[], string][]) {
          const t = await time(step);
          if (typeof t === 'string') failed = t;
          else xs.push(t);
        }
      }
      await student.call('DELETE', `/api/labs/${id}/session`);
      rows.push(
        `| ${id} | ${steps.length} | ${median(first).toFixed(0)} | ${median(last).toFixed(0)} | ${failed} |`,
      );
      process.stderr.write(`${rows.at(-1)}\n`);
    }
    process.stdout.write(
      `Start step over, median of ${RUNS} runs (ms): a fresh sandbox at step 1, and at the last step with every step before it typed in and checked\n\n`,
    );
    process.stdout.write(
      '| lab | steps | at step 1 | at the last step | failure |\n| --- | ---: | ---: | ---: | --- |\n',
    );
    for (const r of rows) process.stdout.write(`${r}\n`);
  } finally {
    await srv.stop();
  }
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});

/**
 * npm run bench:instructor - what the instructor's dashboard costs the
 * server: a class of N students with a day of recorded work in every lab
 * (checks failed and passed, hints, skips), the dashboard's request
 * (GET /api/instructor/cohorts/NAME, polled every 2 s) timed alone, and the
 * server's /healthz latency (its event loop, which the students' terminals
 * share) while 4 dashboards poll as fast as they can. Figures, not
 * assertions.
 *
 *   node dist/test/bench/instructor.bench.js [--students 200] [--runs 30]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createCohort } from '../../server/classroom/cohorts';
import { loadLabs } from '../../server/labs/loader';
import { Store } from '../../server/store/store';
import { startServer } from '../helpers/browser';
import { REPO } from '../helpers/env';

const argAt = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const STUDENTS = Number(argAt('students') ?? 200);
const RUNS = Number(argAt('runs') ?? 30);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

/** A deterministic pseudo-random sequence, so runs compare. */
let seed = 42;
const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

async function main(): Promise<void> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-bench-instructor-'));
  const labs = loadLabs([path.join(REPO, 'labs')]).labs;
  const store = new Store(stateDir);
  const { cohort, token } = createCohort(
    store,
    { name: 'bench-class', labs: labs.map((l) => l.lab.metadata.id) },
    labs.map((l) => l.lab.metadata.id),
  );
  let events = 0;
  const t0 = Date.now() - 3 * 3600_000;
  for (let n = 0; n < STUDENTS; n++) {
    const student = `bench-student-${n}`;
    store.addMember(cohort.name, student, `Student ${n}`);
    for (const l of labs) {
      // Most students get through part of each lab.
      const reach = Math.floor(rand() * (l.lab.steps.length + 1));
      const steps: Record<string, unknown> = {};
      let at = t0 + Math.floor(rand() * 3600_000);
      store.addEvent(student, l.lab.metadata.id, '', 'open', {});
      l.lab.steps.forEach((st, i) => {
        const tries =
          i < reach ? 1 + Math.floor(rand() * 4) : i === reach ? Math.floor(rand() * 3) : 0;
        const hints = Math.floor(rand() * 2);
        for (let k = 0; k < hints; k++) {
          store.addEvent(student, l.lab.metadata.id, st.id, 'hint', { hint: 'a hint' });
          events++;
        }
        for (let k = 0; k < tries; k++) {
          const pass = i < reach && k === tries - 1;
          at += 30_000 + Math.floor(rand() * 300_000);
          store.addEvent(student, l.lab.metadata.id, st.id, pass ? 'check-pass' : 'check-fail', {
            message: pass ? `done ${k}` : `Not yet: try ${k % 3}`,
            attempt: k + 1,
          });
          events++;
        }
        steps[st.id] = {
          passed: i < reach,
          skipped: false,
          message: i < reach ? 'done' : '',
          attempts: tries,
          hintsShown: hints,
          ...(i < reach ? { passedAt: at } : {}),
        };
      });
      store.saveProgress(student, l.lab.metadata.id, {
        lab: l.lab.metadata.id,
        current: Math.min(reach, l.lab.steps.length),
        steps,
      });
    }
  }
  store.close();

  // One address polls several dashboards at once: as bench:class does, an operator's setting.
  const srv = await startServer(undefined, {
    UNDERLAY_STATE_DIR: stateDir,
    UNDERLAY_CONNECTIONS_PER_CLIENT: '256',
  });
  const url = `${srv.url}/api/instructor/cohorts/${cohort.name}`;
  const headers = { authorization: `Bearer ${token}` };
  const get = async (u: string, h: Record<string, string> = {}) => {
    const a = performance.now();
    const r = await fetch(u, { headers: h });
    const body = await r.arrayBuffer();
    if (!r.ok) throw new Error(`${u}: ${r.status}`);
    return { ms: performance.now() - a, bytes: body.byteLength };
  };
  try {
    await get(url, headers); // warm-up
    // Computed: each request after the server's half-second view cache expired.
    const alone: number[] = [];
    let bytes = 0;
    for (let i = 0; i < RUNS; i++) {
      await new Promise((r) => setTimeout(r, 600));
      const r = await get(url, headers);
      alone.push(r.ms);
      bytes = r.bytes;
    }
    const exportMs: number[] = [];
    for (let i = 0; i < 5; i++) exportMs.push((await get(`${url}/export?format=csv`, headers)).ms);

    // 4 dashboards polling back to back; /healthz every 20 ms meanwhile.
    let stop = false;
    const errors: string[] = [];
    const pollers = Array.from({ length: 4 }, async () => {
      let n = 0;
      while (!stop) {
        try {
          await get(url, headers);
          n++;
        } catch (err) {
          errors.push(String((err as Error).cause ?? err));
        }
      }
      return n;
    });
    const health: number[] = [];
    const quiet: number[] = [];
    for (let i = 0; i < 50; i++) {
      health.push((await get(`${srv.url}/healthz`)).ms);
      await new Promise((r) => setTimeout(r, 20));
    }
    stop = true;
    const polls = (await Promise.all(pollers)).reduce((a, b) => a + b, 0);
    if (errors.length) process.stderr.write(`${errors.length} failed polls, first: ${errors[0]}\n`);
    for (let i = 0; i < 50; i++) {
      quiet.push((await get(`${srv.url}/healthz`)).ms);
      await new Promise((r) => setTimeout(r, 20));
    }
    process.stdout.write(
      `instructor dashboard: ${STUDENTS} students, ${labs.length} labs, ${events} events; ${RUNS} runs\n\n` +
        '| figure | p50 ms | p95 ms | max ms |\n| --- | --- | --- | --- |\n' +
        `| GET the dashboard, computed (${(bytes / 1024).toFixed(0)} KiB) | ${pct(alone, 50).toFixed(1)} | ${pct(alone, 95).toFixed(1)} | ${Math.max(...alone).toFixed(1)} |\n` +
        `| GET the CSV export | ${pct(exportMs, 50).toFixed(1)} | ${pct(exportMs, 95).toFixed(1)} | ${Math.max(...exportMs).toFixed(1)} |\n` +
        `| /healthz, idle | ${pct(quiet, 50).toFixed(1)} | ${pct(quiet, 95).toFixed(1)} | ${Math.max(...quiet).toFixed(1)} |\n` +
        `| /healthz while 4 dashboards poll back to back (${polls} polls) | ${pct(health, 50).toFixed(1)} | ${pct(health, 95).toFixed(1)} | ${Math.max(...health).toFixed(1)} |\n`,
    );
  } catch (err) {
    process.stderr.write(`server log (tail):\n${srv.log().slice(-3000)}\n`);
    throw err;
  } finally {
    await srv.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }
}

void main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});

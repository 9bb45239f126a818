/**
 * `underlay cohort create|list|show|close` (docs/classroom.md): classes of
 * students on a set of labs, in the server's store. Creating one prints the
 * students' join link and code and, once, the instructor's link.
 */
import * as fs from 'node:fs';
import * as crypto from 'node:crypto';
import * as path from 'node:path';
import {
  Classroom,
  closeCohort,
  cohortState,
  createCohort,
  drawCode,
  formatCode,
  getCohort,
  hashToken,
  memberKey,
  validateSpec,
  type CohortSpec,
} from '../classroom/cohorts';
import { COHORTS_FILE, loadCohortsFile, syncCohorts } from '../classroom/cohorts-file';
import { ANALYTICS_COLUMNS, exportRows, toCsv, type ExportStep } from '../classroom/export';
import { formatProblem } from '../util/yaml-file';
import { loadConfig } from '../config';
import { loadLabs } from '../labs/loader';
import { Store, type CohortRow } from '../store/store';
import { RequestError } from '../util/errors';

/** Runs `fn` with the server's store open, and closes it whatever happens. */
function withStore<T>(fn: (s: Store) => T): T {
  const s = new Store(loadConfig().stateDir);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}

function knownLabs(): string[] {
  return loadLabs([loadConfig().labsDir]).labs.map((l) => l.lab.metadata.id);
}

/** An ISO date (a bare date is midnight UTC); undefined when not given. */
export function parseWhen(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = Date.parse(v);
  if (!Number.isFinite(ms))
    throw new RequestError('invalid', `${flag} ${JSON.stringify(v)} is not a date`, {
      hint: 'an ISO date and time, e.g. 2026-12-07T09:00+01:00',
    });
  return ms;
}

const iso = (ms: number | undefined) =>
  ms === undefined ? '-' : new Date(ms).toISOString().replace(/:\d\d\.\d+Z$/, 'Z');

function describe(c: CohortRow): string {
  const window =
    c.starts === undefined && c.ends === undefined
      ? 'no time limit'
      : `open ${c.starts !== undefined ? `from ${iso(c.starts)} ` : ''}${c.ends !== undefined ? `until ${iso(c.ends)}` : ''}`.trim();
  const warm = Object.entries(c.warm ?? {});
  return `labs ${c.labs.join(', ')}; ${c.seats !== undefined ? `${c.seats} seats` : 'no seat limit'}; ${window}${warm.length ? `; warm seats ${warm.map(([lab, n]) => `${lab}=${n}`).join(', ')}` : ''}`;
}

export function create(spec: CohortSpec, url: string): void {
  withStore((s) => {
    const { cohort, token } = createCohort(s, spec, knownLabs());
    const base = url.replace(/\/+$/, '');
    const code = formatCode(cohort.code);
    process.stdout.write(
      `cohort ${cohort.name} created: ${describe(cohort)}\n` +
        `  students join at  ${base}/join?code=${code}   (or type the code ${code})\n` +
        `  instructor        ${base}/instructor?cohort=${cohort.name}#token=${token}\n` +
        `The instructor link is shown only now (the server keeps a hash of it): keep it private.\n`,
    );
  });
}

export function list(): void {
  withStore((s) => {
    const rows = s.listCohorts();
    if (rows.length === 0) {
      process.stdout.write(
        'no cohorts (make one with: underlay cohort create NAME --labs LAB,...)\n',
      );
      return;
    }
    const lines = rows.map((c) => [
      c.name,
      formatCode(c.code),
      cohortState(c),
      `${s.members(c.name).length}/${c.seats ?? '-'}`,
      c.labs.join(','),
    ]);
    const head = ['NAME', 'CODE', 'STATE', 'SEATED', 'LABS'];
    const w = head.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] as string).length)));
    for (const l of [head, ...lines])
      process.stdout.write(
        l.map((x, i) => (i < l.length - 1 ? x.padEnd(w[i] as number) : x)).join('  ') + '\n',
      );
  });
}

export function show(name: string): void {
  withStore((s) => {
    const c = getCohort(s, name);
    const members = s.members(c.name);
    process.stdout.write(
      `cohort ${c.name}: ${cohortState(c)}\n` +
        `  code      ${formatCode(c.code)}\n` +
        `  ${describe(c)}\n` +
        `  created   ${iso(c.created)}${c.source === 'file' ? ` (declared in ${COHORTS_FILE})` : ''}\n` +
        `  students  ${members.length}${members.length ? ':' : ''}\n` +
        members.map((m) => `    ${JSON.stringify(m.display)}  joined ${iso(m.joined)}\n`).join(''),
    );
  });
}

/**
 * Changes a cohort made with `cohort create`: its seats, window, warm seats,
 * or a new join code (the old one is refused from now on: a code that
 * leaked, or seats taken by made-up students, see `remove` on the
 * dashboard). A cohort from cohorts.yaml is changed in the file.
 */
export function set(
  name: string,
  change: {
    seats?: number;
    starts?: number;
    ends?: number;
    warm?: Record<string, number>;
    newCode?: boolean;
  },
  url: string,
): void {
  withStore((s) => {
    const c = getCohort(s, name);
    if (c.source === 'file')
      throw new RequestError('conflict', `cohort ${name} is declared in cohorts.yaml`, {
        hint: 'change it in the file, then `underlay cohort sync` (or restart the server)',
      });
    const next: CohortRow = {
      ...c,
      ...(change.seats !== undefined ? { seats: change.seats } : {}),
      ...(change.starts !== undefined ? { starts: change.starts } : {}),
      ...(change.ends !== undefined ? { ends: change.ends } : {}),
      ...(change.warm !== undefined ? { warm: change.warm } : {}),
    };
    validateSpec(
      {
        name: next.name,
        labs: next.labs,
        ...(next.starts !== undefined ? { starts: next.starts } : {}),
        ...(next.ends !== undefined ? { ends: next.ends } : {}),
        ...(next.seats !== undefined ? { seats: next.seats } : {}),
        ...(next.warm ? { warm: next.warm } : {}),
      },
      // Its labs do not change here: one that left the labs folder must not
      // stop a new code (a leaked one) or more seats.
      next.labs,
    );
    if (change.newCode) {
      // A drawn code another cohort holds is drawn again (27^8 codes).
      do next.code = drawCode();
      while (s.cohortByCode(next.code) || next.code === c.code);
    }
    s.updateCohort(next);
    const taken = s.members(name).length;
    const code = formatCode(next.code);
    process.stdout.write(
      `cohort ${name} updated: ${describe(next)}\n` +
        (change.newCode
          ? `  students join at  ${url.replace(/\/+$/, '')}/join?code=${code}   (or type the code ${code}); the old code is refused from now on\n`
          : '') +
        (next.seats !== undefined && taken > next.seats
          ? `  ${taken} students sit in it already: nobody new joins until some are removed (the dashboard's Remove from class)\n`
          : ''),
    );
  });
}

export function close(name: string): void {
  withStore((s) => {
    const c = closeCohort(s, name);
    process.stdout.write(
      `cohort ${c.name} closed: new joins are refused; its ${s.members(c.name).length} students keep their progress\n`,
    );
  });
}

export function exportCohort(
  name: string,
  format: string,
  output: string | undefined,
  what = 'progress',
): void {
  if (format !== 'csv' && format !== 'json')
    throw new RequestError('invalid', `--format must be csv or json, got '${format}'`);
  if (what !== 'progress' && what !== 'analytics')
    throw new RequestError('invalid', `--what must be progress or analytics, got '${what}'`);
  withStore((s) => {
    const c = getCohort(s, name);
    const labs = new Map(
      loadLabs([loadConfig().labsDir]).labs.map((l) => [
        l.lab.metadata.id,
        l.lab.steps.map((st) => st.id),
      ]),
    );
    if (what === 'analytics') {
      const figures = new Classroom(s).analytics(
        c,
        s.members(c.name),
        c.labs.map((id) => ({ id, steps: labs.get(id) ?? [] })),
      );
      const text =
        format === 'csv'
          ? toCsv(figures, ANALYTICS_COLUMNS)
          : `${JSON.stringify(figures, null, 2)}\n`;
      if (output) {
        fs.writeFileSync(output, text);
        process.stderr.write(`${figures.length} steps written to ${output}\n`);
      } else process.stdout.write(text);
      return;
    }
    const rows = exportRows(
      c.name,
      s.members(c.name),
      c.labs.map((id) => ({ id, steps: labs.get(id) ?? [] })),
      (student, lab) =>
        (s.getProgress(student, lab) as { steps?: Record<string, ExportStep> } | undefined)?.steps,
      (m) => memberKey(c.name, m.student),
    );
    const text = format === 'csv' ? toCsv(rows) : `${JSON.stringify(rows, null, 2)}\n`;
    if (output) {
      fs.writeFileSync(output, text);
      process.stderr.write(
        `${rows.length} rows (${s.members(c.name).length} students) written to ${output}\n`,
      );
    } else process.stdout.write(text);
  });
}

/** A new instructor token and the hash a cohorts file declares (the token goes to the instructor). */
export function token(): void {
  const t = crypto.randomBytes(32).toString('base64url');
  process.stdout.write(
    `instructor token (give it to the instructor; it is not stored anywhere): ${t}\n` +
      `in ${COHORTS_FILE}:  instructorTokenSha256: '${hashToken(t)}'\n` +
      `the instructor's link, once the cohort exists: <url>/instructor?cohort=<name>#token=${t}\n`,
  );
}

/**
 * Applies the labs folder's cohorts.yaml (or `file`) to the store: what
 * `underlay serve` does at start. Problems are printed with file:line:col
 * and nothing is applied; exit status 1.
 */
export function sync(file: string | undefined, url: string): void {
  const labsDir = loadConfig().labsDir;
  const f = file ?? path.join(labsDir, COHORTS_FILE);
  if (!fs.existsSync(f))
    throw new RequestError('not-found', `no cohorts file at ${f}`, {
      hint: `declare cohorts in ${path.join(labsDir, COHORTS_FILE)} (docs/classroom.md#cohorts-in-a-file)`,
    });
  // Relative to where the author stands when it is below it; else as given.
  const rel = path.relative(process.cwd(), f);
  const shown = rel && !rel.startsWith('..') ? rel : f;
  const { cohorts, problems } = loadCohortsFile(f, shown, knownLabs());
  if (!cohorts) {
    for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
    process.stderr.write(`${problems.length} problem(s): nothing applied\n`);
    process.exitCode = 1;
    return;
  }
  withStore((s) => {
    const r = syncCohorts(s, cohorts, drawCode);
    const base = url.replace(/\/+$/, '');
    for (const d of cohorts) {
      const c = getCohort(s, d.name);
      const what = r.created.includes(d.name)
        ? 'created'
        : r.updated.includes(d.name)
          ? 'updated'
          : 'unchanged';
      process.stdout.write(
        `cohort ${c.name} ${what} (${cohortState(c)}): ${describe(c)}\n` +
          `  students join at  ${base}/join?code=${formatCode(c.code)}\n`,
      );
    }
    for (const n of r.closed)
      process.stdout.write(`cohort ${n} closed: it is no longer in the file\n`);
  });
}

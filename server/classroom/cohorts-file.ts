/**
 * Cohorts declared in a reviewed file next to the labs (`cohorts.yaml` in
 * the labs folder; docs/classroom.md#cohorts-in-a-file): git-friendly, so a
 * course's classes are reviewed like its labs. The file holds no secret:
 * the instructor token appears only as its sha256 (`underlay cohort token`
 * makes a pair). `underlay serve` applies the file at start and `underlay
 * cohort sync` on demand; the file wins over the store for the cohorts it
 * declares, and a cohort that leaves the file is closed (never deleted:
 * students keep their progress).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import type { CohortRow, Store } from '../store/store';
import { didYouMean, fieldPath, readYaml, type YamlProblem } from '../util/yaml-file';
import { normalizeCode, validateSpec } from './cohorts';
import { RequestError } from '../util/errors';

export const COHORTS_FILE = 'cohorts.yaml';

const when = z
  .string()
  .describe('An ISO date and time, e.g. 2026-12-07T09:00+01:00 (a bare date is midnight UTC).');

const SEATS_MESSAGE = { error: 'a whole number of seats, from 1 to 1000' };
const seatCount = z
  .number(SEATS_MESSAGE)
  .int(SEATS_MESSAGE)
  .min(1, SEATS_MESSAGE)
  .max(1000, SEATS_MESSAGE);

const Declared = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,39}$/, "lower-case letters, digits and '-', at most 40")
      .describe('The cohort name, as in `underlay cohort show NAME` and the instructor link.'),
    labs: z.array(z.string()).min(1).describe('Lab ids of the labs folder, in class order.'),
    instructorTokenSha256: z
      .string({ error: "the 64 hex digits `underlay cohort token` prints, in quotes ('…')" })
      .regex(/^[0-9a-f]{64}$/, 'the 64 hex digits `underlay cohort token` prints')
      .describe('sha256 of the instructor token (never the token itself).'),
    code: z
      .string()
      .optional()
      .describe('A fixed join code (XXXX-XXXX) for printed handouts; absent: one is drawn.'),
    seats: z.number().int().min(1).optional(),
    warm: z
      .record(z.string(), seatCount, {
        error: 'warm seats per lab of the class, e.g. { uts-hostname: 30 }',
      })
      .optional()
      .describe(
        'Warm seats per lab of the class ({lab: N}): started from 15 minutes before `starts` until `ends`.',
      ),
    starts: when.optional(),
    ends: when.optional(),
    closed: z.boolean().default(false),
  })
  .strict();

export const CohortsFile = z.object({ cohorts: z.array(Declared) }).strict();

export interface DeclaredCohort {
  name: string;
  labs: string[];
  tokenHash: string;
  code?: string;
  seats?: number;
  warm?: Record<string, number>;
  starts?: number;
  ends?: number;
  closed: boolean;
}

/**
 * Reads and checks a cohorts file. Problems (file:line:col) for the YAML,
 * the schema, unknown labs, dates, codes and duplicates, all at once;
 * `cohorts` only when there are none.
 */
export function loadCohortsFile(
  abs: string,
  display: string,
  knownLabs: readonly string[],
): { cohorts?: DeclaredCohort[]; problems: YamlProblem[] } {
  const r = readYaml(abs, display, CohortsFile);
  if (!r.value || !r.loc) return { problems: r.problems };
  const loc = r.loc;
  const problems: YamlProblem[] = [];
  const at = (p: (string | number)[], message: string) =>
    problems.push({ file: display, ...loc.at(p), field: fieldPath(p), message });
  const names = new Map<string, number>();
  const codes = new Map<string, number>();
  const out: DeclaredCohort[] = [];
  r.value.cohorts.forEach((c, i) => {
    const base = ['cohorts', i];
    if (names.has(c.name))
      at([...base, 'name'], `duplicate cohort "${c.name}" (also cohorts[${names.get(c.name)}])`);
    names.set(c.name, i);
    let code: string | undefined;
    if (c.code !== undefined) {
      code = normalizeCode(c.code);
      if (!code)
        at(
          [...base, 'code'],
          `"${c.code}" cannot be a join code: 8 of ACDEFGHJKMNPQRTUVWXYZ234679, e.g. ACDE-FG23`,
        );
      else if (codes.has(code))
        at([...base, 'code'], `the code is also cohorts[${codes.get(code)}]'s`);
      else codes.set(code, i);
    }
    const dates: Partial<Record<'starts' | 'ends', number>> = {};
    for (const k of ['starts', 'ends'] as const) {
      const v = c[k];
      if (v === undefined) continue;
      const ms = Date.parse(v);
      if (Number.isFinite(ms)) dates[k] = ms;
      else at([...base, k], `"${v}" is not a date: e.g. 2026-12-07T09:00+01:00`);
    }
    c.labs.forEach((lab, j) => {
      if (!knownLabs.includes(lab))
        at(
          [...base, 'labs', j],
          `no lab "${lab}" in the labs folder (labs: ${knownLabs.join(', ')})`,
        );
    });
    for (const [lab, n] of Object.entries(c.warm ?? {})) {
      if (!c.labs.includes(lab)) {
        const near = didYouMean(lab, c.labs);
        at(
          [...base, 'warm', lab],
          `"${lab}" is not one of this class's labs${near ? ` - did you mean "${near}"?` : ''} (labs: ${c.labs.join(', ')})`,
        );
      } else if (c.seats !== undefined && n > c.seats)
        at(
          [...base, 'warm', lab],
          `${n} warm seats for a class of ${c.seats} seat${c.seats === 1 ? '' : 's'}`,
        );
    }
    try {
      validateSpec(
        { name: c.name, labs: c.labs, ...dates, ...(c.seats ? { seats: c.seats } : {}) },
        [...knownLabs],
      );
    } catch (err) {
      // Unknown labs are placed above; the rest (a lab twice, ends before starts) here.
      const msg = (err as Error).message;
      if (!/^no lab /.test(msg)) at(base, msg);
    }
    out.push({
      name: c.name,
      labs: c.labs,
      tokenHash: c.instructorTokenSha256,
      ...(code ? { code } : {}),
      ...(c.seats !== undefined ? { seats: c.seats } : {}),
      ...(c.warm && Object.keys(c.warm).length ? { warm: c.warm } : {}),
      ...dates,
      closed: c.closed,
    });
  });
  problems.sort((a, b) => a.line - b.line || a.col - b.col);
  return problems.length ? { problems } : { cohorts: out, problems };
}

export interface SyncResult {
  created: string[];
  updated: string[];
  unchanged: string[];
  /** Declared before, gone from the file: closed. */
  closed: string[];
}

/**
 * Applies declared cohorts to the store. Refuses (RequestError, nothing
 * applied) a name taken by a cohort made with the CLI, and a code taken by
 * another cohort.
 */
export function syncCohorts(
  store: Store,
  declared: DeclaredCohort[],
  drawCode: () => string,
  now = Date.now(),
): SyncResult {
  const result: SyncResult = { created: [], updated: [], unchanged: [], closed: [] };
  for (const d of declared) {
    const had = store.getCohort(d.name);
    if (had && had.source !== 'file')
      throw new RequestError(
        'conflict',
        `cohort ${d.name} was made with \`underlay cohort create\`, not declared in the file`,
        { hint: 'rename one of them (a file cohort and a CLI cohort cannot share a name)' },
      );
    const byCode = d.code ? store.cohortByCode(d.code) : undefined;
    if (byCode && byCode.name !== d.name)
      throw new RequestError('conflict', `cohort ${d.name}: its code is cohort ${byCode.name}'s`, {
        hint: 'pick another code, or leave `code` out to have one drawn',
      });
  }
  const names = new Set(declared.map((d) => d.name));
  for (const d of declared) {
    const had = store.getCohort(d.name);
    const row: CohortRow = {
      name: d.name,
      code: d.code ?? had?.code ?? drawCode(),
      tokenHash: d.tokenHash,
      labs: d.labs,
      ...(d.starts !== undefined ? { starts: d.starts } : {}),
      ...(d.ends !== undefined ? { ends: d.ends } : {}),
      ...(d.seats !== undefined ? { seats: d.seats } : {}),
      ...(d.warm ? { warm: d.warm } : {}),
      closed: d.closed,
      created: had?.created ?? now,
      source: 'file',
    };
    if (!had) {
      // A drawn code that collides is drawn again (27^8 codes: it will not loop).
      while (!store.addCohort(row)) row.code = drawCode();
      result.created.push(d.name);
    } else if (JSON.stringify(had) !== JSON.stringify(row)) {
      store.updateCohort(row);
      result.updated.push(d.name);
    } else result.unchanged.push(d.name);
  }
  for (const c of store.listCohorts())
    if (c.source === 'file' && !names.has(c.name) && !c.closed) {
      store.updateCohort({ ...c, closed: true });
      result.closed.push(c.name);
    }
  return result;
}

/** The cohorts file of a labs folder, if it has one. */
export function cohortsFileOf(labsDir: string): string | undefined {
  const f = path.join(labsDir, COHORTS_FILE);
  return fs.existsSync(f) ? f : undefined;
}

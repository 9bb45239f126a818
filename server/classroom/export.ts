/**
 * A cohort's progress as rows for a gradebook: one per student and step, in
 * the order of the class's labs and their steps (docs/classroom.md#exports).
 * Pure: the caller passes the labs' steps and a progress reader (the CLI
 * reads the store, the HTTP route the lab engine).
 */
import type { MemberRow } from '../store/store';

export interface ExportStep {
  passed: boolean;
  skipped: boolean;
  attempts: number;
  hintsShown: number;
  passedAt?: number;
}

export interface ExportRow {
  cohort: string;
  student: string;
  /** The student's key in this class (as on the dashboard): tells apart two who typed one name. */
  key: string;
  joined: string;
  lab: string;
  step: string;
  passed: boolean;
  skipped: boolean;
  attempts: number;
  hints: number;
  passedAt: string;
}

export const EXPORT_COLUMNS: (keyof ExportRow)[] = [
  'cohort',
  'student',
  'joined',
  'lab',
  'step',
  'passed',
  'skipped',
  'attempts',
  'hints',
  'passedAt',
  // Last: columns before it keep their places for scripts that read by position.
  'key',
];

const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());

export function exportRows(
  cohort: string,
  members: MemberRow[],
  labs: { id: string; steps: string[] }[],
  progress: (student: string, lab: string) => Record<string, ExportStep | undefined> | undefined,
  keyOf: (m: MemberRow) => string,
): ExportRow[] {
  const rows: ExportRow[] = [];
  for (const m of members)
    for (const lab of labs) {
      const p = progress(m.student, lab.id) ?? {};
      for (const step of lab.steps) {
        const s = p[step];
        rows.push({
          cohort,
          student: m.display,
          key: keyOf(m),
          joined: iso(m.joined),
          lab: lab.id,
          step,
          passed: s?.passed ?? false,
          skipped: s?.skipped ?? false,
          attempts: s?.attempts ?? 0,
          hints: s?.hintsShown ?? 0,
          passedAt: iso(s?.passedAt),
        });
      }
    }
  return rows;
}

/**
 * RFC 4180 CSV. A cell a spreadsheet would run as a formula (a display name
 * starting with =, +, - or @) gets a leading apostrophe: names are typed by
 * students, and the file is opened by instructors (OWASP "CSV injection").
 * A cell with a `;` or a tab is quoted too: a spreadsheet whose locale
 * separates by `;` would split it there, and a part could start with `=`.
 */
export function toCsv<T extends object = ExportRow>(
  rows: T[],
  columns: readonly (keyof T & string)[] = EXPORT_COLUMNS as unknown as (keyof T & string)[],
): string {
  const cell = (v: unknown) => {
    let t = String(v);
    if (/^[=+\-@\t\r]/.test(t)) t = `'${t}`;
    return /[",;\t\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c] ?? '')).join(','))]
    .map((l) => `${l}\r\n`)
    .join('');
}

/** The columns of the analytics export, in order (one row per lab and step). */
export const ANALYTICS_COLUMNS = [
  'lab',
  'step',
  'started',
  'passed',
  'skipped',
  'completion',
  'medianMs',
  'checksPerPass',
  'hinted',
] as const;

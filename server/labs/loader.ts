/**
 * Reads and validates labs. Every problem is reported with file:line:col,
 * the field path, what was expected and - for misspelt keys - a did-you-mean;
 * all problems of all labs at once, never just the first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { Lab, type Step } from './schema';

export interface LabProblem {
  file: string;
  line: number;
  col: number;
  /** Field path like steps[0].check.script, or '' for the whole file. */
  field: string;
  message: string;
}

export interface LoadedLab {
  lab: Lab;
  dir: string;
  file: string;
}

export function formatProblem(p: LabProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

function fieldPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

export function didYouMean(key: string, allowed: string[]): string | undefined {
  let best: string | undefined;
  let score = Infinity;
  for (const k of allowed) {
    const s = levenshtein(key.toLowerCase(), k.toLowerCase());
    if (s < score) {
      score = s;
      best = k;
    }
  }
  return best !== undefined && score <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

type AnySchema = z.ZodType & { _zod: { def: Record<string, unknown> } };

/** The keys an object schema at `p` accepts (through optional/default/array/union). */
function keysAt(schema: AnySchema, p: readonly PropertyKey[]): string[] {
  const unwrap = (s: AnySchema): AnySchema[] => {
    const def = s._zod.def;
    switch (def.type) {
      case 'optional':
      case 'default':
      case 'nullable':
        return unwrap(def.innerType as AnySchema);
      case 'union':
        return (def.options as AnySchema[]).flatMap(unwrap);
      default:
        return [s];
    }
  };
  let cur: AnySchema[] = unwrap(schema);
  for (const k of p) {
    const next: AnySchema[] = [];
    for (const s of cur) {
      const def = s._zod.def;
      if (def.type === 'object' && typeof k === 'string') {
        const child = (def.shape as Record<string, AnySchema>)[k];
        if (child) next.push(...unwrap(child));
      } else if (def.type === 'array' && typeof k === 'number') {
        next.push(...unwrap(def.element as AnySchema));
      }
    }
    cur = next;
  }
  return [
    ...new Set(
      cur.flatMap((s) =>
        s._zod.def.type === 'object' ? Object.keys(s._zod.def.shape as object) : [],
      ),
    ),
  ];
}

class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lc: LineCounter,
  ) {}

  /** Position of the node at `p`, or of its nearest existing ancestor. */
  at(p: readonly PropertyKey[], key?: string): { line: number; col: number } {
    for (let n = p.length; n >= 0; n--) {
      const node = this.doc.getIn(p.slice(0, n) as (string | number)[], true) as
        | { range?: [number, number, number] }
        | undefined;
      if (node && node.range) {
        if (key && isMap(node)) {
          const pair = node.items.find(
            (it) => isPair(it) && isScalar(it.key) && it.key.value === key,
          );
          const kr = pair && isScalar(pair.key) ? pair.key.range : undefined;
          if (kr) return this.pos(kr[0]);
        }
        return this.pos(node.range[0]);
      }
    }
    return { line: 1, col: 1 };
  }

  pos(offset: number): { line: number; col: number } {
    const { line, col } = this.lc.linePos(offset);
    return { line, col };
  }
}

/** Loads one lab folder (containing lab.yaml). */
/**
 * `rel` resolved inside the lab folder with links followed, or undefined if
 * it is missing or leads outside (`../../etc/passwd`, or a link to it): a
 * lab may only ship and serve its own files.
 */
export function insideLab(dir: string, rel: string): string | undefined {
  let real: string;
  let root: string;
  try {
    real = fs.realpathSync(path.resolve(dir, rel));
    root = fs.realpathSync(dir);
  } catch {
    return undefined;
  }
  return real === root || real.startsWith(root + path.sep) ? real : undefined;
}

export function loadLab(dir: string, display = dir): { lab?: LoadedLab; problems: LabProblem[] } {
  const file = path.join(display, 'lab.yaml');
  const abs = path.join(dir, 'lab.yaml');
  const problems: LabProblem[] = [];
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (err) {
    return {
      problems: [
        { file, line: 1, col: 1, field: '', message: `cannot read: ${(err as Error).message}` },
      ],
    };
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  for (const e of doc.errors) {
    const { line, col } = lc.linePos(e.pos[0]);
    problems.push({ file, line, col, field: '', message: `YAML: ${e.message.split('\n')[0]}` });
  }
  if (problems.length) return { problems };
  const loc = new Locator(doc, lc);
  let data: unknown;
  try {
    // maxAliasCount: the yaml library's guard against alias bombs ("billion laughs").
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    return {
      problems: [{ file, line: 1, col: 1, field: '', message: `YAML: ${(err as Error).message}` }],
    };
  }
  const parsed = Lab.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) {
          const hint = didYouMean(key, keysAt(Lab as unknown as AnySchema, issue.path));
          problems.push({
            file,
            ...loc.at(issue.path, key),
            field: fieldPath([...issue.path, key]),
            message: `unknown field "${key}"${hint ? ` - did you mean "${hint}"?` : ''}`,
          });
        }
      } else {
        problems.push({
          file,
          ...loc.at(issue.path),
          field: fieldPath(issue.path),
          message: issue.message,
        });
      }
    }
    return { problems };
  }
  const lab = parsed.data;
  // Semantic checks the schema cannot express.
  const seen = new Map<string, number>();
  const terminals = new Set(lab.sandbox.terminals.map((t) => t.name));
  const modes: ('v1' | 'v2')[] =
    lab.requires.cgroup === 'any' ? ['v1', 'v2'] : [lab.requires.cgroup];
  lab.sandbox.files.forEach((f, i) => {
    const p = ['sandbox', 'files', i, 'from'];
    if (!insideLab(dir, f.from))
      problems.push({
        file,
        ...loc.at(p),
        field: fieldPath(p),
        message: `file not found: ${f.from} (relative to ${display}; must stay inside the lab folder)`,
      });
  });
  lab.steps.forEach((step, i) => {
    if (seen.has(step.id)) {
      problems.push({
        file,
        ...loc.at(['steps', i, 'id']),
        field: `steps[${i}].id`,
        message: `duplicate step id "${step.id}" (also steps[${seen.get(step.id)}])`,
      });
    }
    seen.set(step.id, i);
    for (const [where, body] of [
      ['', step],
      ...Object.entries(step.variants ?? {}).map(([k, v]) => [`.variants.${k}`, v]),
    ] as [string, Partial<Step>][]) {
      if (body.instructionsFile) {
        const f = insideLab(dir, body.instructionsFile);
        // The text is served and scanned like inline instructions.
        if (f && fs.statSync(f).isFile()) body.instructions = fs.readFileSync(f, 'utf8');
        else {
          const p = ['steps', i, ...(where ? where.slice(1).split('.') : []), 'instructionsFile'];
          problems.push({
            file,
            ...loc.at(p),
            field: fieldPath(p),
            message: `file not found: ${body.instructionsFile} (relative to ${display}; must stay inside the lab folder)`,
          });
        }
      }
      const md = body.instructions ?? '';
      for (const m of md.matchAll(/^```\w*[^\n]*\bterminal=([\w-]+)/gm)) {
        if (!terminals.has(m[1] as string)) {
          const p = ['steps', i, ...(where ? where.slice(1).split('.') : []), 'instructions'];
          problems.push({
            file,
            ...loc.at(p),
            field: fieldPath(p),
            message: `unknown terminal "${m[1]}"; the lab declares ${[...terminals].join(', ')}`,
          });
        }
      }
    }
    for (const mode of modes) {
      const eff = effectiveStep(step, mode);
      if (!eff.check || !eff.solution) {
        const missing = [!eff.check && 'check', !eff.solution && 'solution']
          .filter(Boolean)
          .join(' and ');
        problems.push({
          file,
          ...loc.at(['steps', i]),
          field: `steps[${i}]`,
          message: `step "${step.id}" has no ${missing} for cgroup ${mode}: every step must be testable (add it to the step or to variants.${mode})`,
        });
      }
    }
  });
  return problems.length ? { problems } : { lab: { lab, dir, file }, problems };
}

/** The step as it applies on a host in cgroup `mode` (variant fields override). */
export function effectiveStep(step: Step, mode: 'v1' | 'v2'): Step {
  const v = step.variants?.[mode];
  if (!v) return step;
  return {
    ...step,
    ...Object.fromEntries(
      Object.entries(v).filter(
        ([, val]) => val !== undefined && !(Array.isArray(val) && val.length === 0),
      ),
    ),
  } as Step;
}

/** Lab folders under the given paths (a lab folder itself, or a folder of lab folders). */
export function findLabDirs(paths: string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (fs.existsSync(path.join(p, 'lab.yaml'))) out.push(p);
    else if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) {
        if (fs.existsSync(path.join(p, e, 'lab.yaml'))) out.push(path.join(p, e));
      }
    }
  }
  return out;
}

export function loadLabs(paths: string[]): { labs: LoadedLab[]; problems: LabProblem[] } {
  const labs: LoadedLab[] = [];
  const problems: LabProblem[] = [];
  const dirs = findLabDirs(paths);
  if (dirs.length === 0) {
    problems.push({
      file: paths.join(' ') || '.',
      line: 1,
      col: 1,
      field: '',
      message: 'no lab found (a lab is a folder with a lab.yaml)',
    });
  }
  const ids = new Map<string, string>();
  for (const d of dirs) {
    const r = loadLab(d, path.relative(process.cwd(), d) || d);
    problems.push(...r.problems);
    if (!r.lab) continue;
    const prev = ids.get(r.lab.lab.metadata.id);
    if (prev) {
      problems.push({
        file: r.lab.file,
        line: 1,
        col: 1,
        field: 'metadata.id',
        message: `duplicate lab id "${r.lab.lab.metadata.id}" (also ${prev})`,
      });
      continue;
    }
    ids.set(r.lab.lab.metadata.id, r.lab.file);
    labs.push(r.lab);
  }
  return { labs, problems };
}

/**
 * A YAML file read against a zod schema, for files people write by hand
 * (labs, cohorts): every problem with file:line:col, the field path, what
 * was expected and - for misspelt keys - a did-you-mean; all problems at
 * once, never just the first.
 */
import * as fs from 'node:fs';
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';

export interface YamlProblem {
  file: string;
  line: number;
  col: number;
  /** Field path like steps[0].check.script, or '' for the whole file. */
  field: string;
  message: string;
}

export function formatProblem(p: YamlProblem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.field ? `${p.field}: ` : ''}${p.message}`;
}

export function fieldPath(p: readonly PropertyKey[]): string {
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

export class Locator {
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

  /**
   * The file line of line `n` (1-based) of the string at `p`: a block scalar
   * (`|`, `>`) starts on the line after its indicator, any other on its own.
   */
  lineIn(p: readonly PropertyKey[], n: number): number {
    const node = this.doc.getIn(p as (string | number)[], true);
    if (!isScalar(node) || !node.range) return this.at(p).line;
    const block = node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED';
    return this.pos(node.range[0]).line + (block ? n : n - 1);
  }

  pos(offset: number): { line: number; col: number } {
    const { line, col } = this.lc.linePos(offset);
    return { line, col };
  }
}

/**
 * Reads `abs` (shown as `file` in problems) and validates it with `schema`.
 * `value` is set only when there is no problem; `loc` places further,
 * semantic problems the caller finds.
 */
export function readYaml<T>(
  abs: string,
  file: string,
  schema: z.ZodType<T>,
): { value?: T; problems: YamlProblem[]; loc?: Locator } {
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
  const problems: YamlProblem[] = [];
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
  const parsed = schema.safeParse(data);
  if (parsed.success) return { value: parsed.data, problems, loc };
  for (const issue of parsed.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const hint = didYouMean(key, keysAt(schema as unknown as AnySchema, issue.path));
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
  return { problems, loc };
}

/**
 * Reads and validates labs. Every problem is reported with file:line:col,
 * the field path, what was expected and - for misspelt keys - a did-you-mean;
 * all problems of all labs at once, never just the first.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fieldPath, readYaml, type YamlProblem } from '../util/yaml-file';
import { Lab, type Step } from './schema';

export { didYouMean, formatProblem } from '../util/yaml-file';
export type LabProblem = YamlProblem;

export interface LoadedLab {
  lab: Lab;
  dir: string;
  file: string;
}

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

/** Bash's parse of a lab's scripts: index -> the first error's line and text. */
export type SyntaxCheck = (scripts: string[]) => Map<number, { line: number; message: string }>;

/** Loads one lab folder (containing lab.yaml). */
export function loadLab(
  dir: string,
  display = dir,
  syntax: SyntaxCheck = bashSyntaxErrors,
): { lab?: LoadedLab; problems: LabProblem[] } {
  const file = path.join(display, 'lab.yaml');
  const abs = path.join(dir, 'lab.yaml');
  const r = readYaml(abs, file, Lab);
  if (!r.value || !r.loc) return { problems: r.problems };
  const problems: LabProblem[] = [];
  const loc = r.loc;
  const lab = r.value;
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
    const pr = step.predict;
    if (pr?.correct !== undefined && !pr.choices?.includes(pr.correct))
      problems.push({
        file,
        ...loc.at(['steps', i, 'predict', 'correct']),
        field: `steps[${i}].predict.correct`,
        message: pr.choices
          ? `"${pr.correct}" is not one of the choices (${pr.choices.map((c) => JSON.stringify(c)).join(', ')})`
          : 'a correct choice needs `choices` to pick from',
      });
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
  // Bash's own parse of every script, so that a quote left open fails here
  // and not, as a check that can never pass, in front of a student.
  const scripts: [(string | number)[], string][] = [];
  if (lab.setup) scripts.push([['setup'], lab.setup]);
  if (lab.lib) scripts.push([['lib'], lab.lib]);
  lab.steps.forEach((step, i) => {
    for (const [where, body] of [
      [[], step],
      ...Object.entries(step.variants ?? {}).map(([k, v]) => [['variants', k], v]),
    ] as [string[], Partial<Step>][]) {
      const at = ['steps', i, ...where];
      if (body.check?.script) scripts.push([[...at, 'check', 'script'], body.check.script]);
      if (body.solution) scripts.push([[...at, 'solution'], body.solution]);
      body.hints?.forEach((h, j) => {
        if ('script' in h && h.script) scripts.push([[...at, 'hints', j, 'script'], h.script]);
      });
      body.nearMisses?.forEach((m, j) =>
        scripts.push([[...at, 'nearMisses', j, 'script'], m.script]),
      );
    }
  });
  const lines = fs.readFileSync(abs, 'utf8').split('\n');
  for (const [k, err] of syntax(scripts.map(([, s]) => s))) {
    const [p, body] = scripts[k] as [(string | number)[], string];
    // An unclosed quote is reported at the end of input: name the last line.
    const n = Math.min(err.line, body.trimEnd().split('\n').length);
    const line = loc.lineIn(p, n);
    const text = lines[line - 1] ?? '';
    const start = loc.at(p);
    problems.push({
      file,
      line,
      col: line === start.line ? start.col : text.length - text.trimStart().length + 1,
      field: fieldPath(p),
      message: `bash cannot parse this script (line ${n} of it): ${err.message}`,
    });
  }
  return problems.length ? { problems } : { lab: { lab, dir, file }, problems };
}

/** A lab's scripts as one input for `bash -n`: each as a function body. */
function asFunctions(scripts: string[]): string {
  return scripts.map((x, i) => `__underlay_${i}() {\n${x}\n}\n`).join('');
}

/** Whether bash parses every script, in one `bash -n`. */
function bashParsesAll(scripts: string[]): boolean {
  if (!scripts.length) return true;
  return spawnSync('bash', ['-n'], { input: asFunctions(scripts), encoding: 'utf8' }).status === 0;
}

/**
 * The indexes of the labs (each a list of scripts) that bash does not parse:
 * one spawn, in which each lab's input goes to a `bash -n` of its own. As
 * arguments: `read -d ''` from a pipe takes a syscall per byte. A lab over
 * the kernel's 128 KiB per argument fails the spawn, and then every lab
 * takes the one-by-one path.
 */
function labsNotParsing(labs: string[][]): number[] {
  const inputs = labs.map((s) => (s.length ? asFunctions(s) : ''));
  if (inputs.every((x) => !x)) return [];
  const r = spawnSync(
    'bash',
    [
      '-c',
      'i=0; for s; do [ -z "$s" ] || bash -n -c "$s" 2>/dev/null || echo "$i"; i=$((i + 1)); done',
      'bash',
      ...inputs,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return labs.map((_, k) => k);
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

/**
 * `bash -n` over every script (a spawn per script costs ~1 ms each, and a lab
 * has dozens): all at once first, then, only when that fails, one by one in a
 * single bash process: index -> the first error's line and text.
 */
export function bashSyntaxErrors(
  scripts: string[],
): Map<number, { line: number; message: string }> {
  const found = new Map<number, { line: number; message: string }>();
  // The usual case, every script fine, in one parse.
  if (bashParsesAll(scripts)) return found;
  // Otherwise one parse each, to name the scripts and lines.
  const r = spawnSync(
    'bash',
    [
      '-c',
      'i=0; for s in "$@"; do out=$(bash -n -c "$s" 2>&1) || printf "%s\\t%s\\0" "$i" "$out"; i=$((i + 1)); done',
      'bash',
      ...scripts,
    ],
    { encoding: 'utf8' },
  );
  for (const rec of (r.stdout ?? '').split('\0')) {
    const tab = rec.indexOf('\t');
    if (tab < 0) continue;
    const out = rec.slice(tab + 1).trim();
    // "bash: -c: line 2: unexpected EOF while looking for matching `''"
    const m = /line (\d+): (.*)/.exec(out.split('\n')[0] ?? '');
    found.set(Number(rec.slice(0, tab)), {
      line: m ? Number(m[1]) : 1,
      message: m ? (m[2] as string) : out,
    });
  }
  return found;
}

/** The step as it applies on a host in cgroup `mode` (variant fields override). */
export function effectiveStep(step: Step, mode: 'v1' | 'v2'): Step {
  const v = step.variants?.[mode];
  if (!v) return step;
  const out = {
    ...step,
    ...Object.fromEntries(
      Object.entries(v).filter(
        ([, val]) => val !== undefined && !(Array.isArray(val) && val.length === 0),
      ),
    ),
  } as Step;
  // The text is shared, then the version's own: the variant adds to the
  // step's instructions (an introduction for both versions), never hides them.
  if (step.instructions && v.instructions)
    out.instructions = `${step.instructions.trimEnd()}\n\n${v.instructions}`;
  return out;
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
  // Bash's parse of each lab, all from one spawn: a spawn is a fork of the
  // whole server (45 ms each on a slow host: 0.7 s of a 15-lab start, and of
  // every reload in dev mode), a small bash per lab is not. Each lab is still
  // parsed on its own (one lab's open quote must never be closed by another
  // lab's text); a lab that fails is loaded again with the parse that names
  // file, line and column.
  const scripts: string[][] = dirs.map(() => []);
  const display = (d: string) => path.relative(process.cwd(), d) || d;
  const loaded = dirs.map((d, k) =>
    loadLab(d, display(d), (s) => {
      scripts[k] = s;
      return new Map();
    }),
  );
  for (const k of labsNotParsing(scripts))
    loaded[k] = loadLab(dirs[k] as string, display(dirs[k] as string));
  for (const r of loaded) {
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
  // The learning path: a lab to do first must be one of these (else the lab
  // is not loaded, like any lab with a problem).
  const broken = new Set<LoadedLab>();
  for (const l of labs)
    l.lab.metadata.requires.forEach((req, i) => {
      // Loaded with it, or next to it in its labs folder (a lab tested alone).
      if (ids.has(req) || fs.existsSync(path.join(path.dirname(l.dir), req, 'lab.yaml'))) return;
      broken.add(l);
      const lines = fs.readFileSync(path.join(l.dir, 'lab.yaml'), 'utf8').split('\n');
      const n = lines.findIndex((ln) => /^\s*requires:/.test(ln));
      problems.push({
        file: l.file,
        line: n + 1 || 1,
        col: n >= 0 ? (lines[n] as string).indexOf('requires') + 1 : 1,
        field: `metadata.requires[${i}]`,
        message: `no lab "${req}" here (labs: ${[...ids.keys()].join(', ')})`,
      });
    });
  return { labs: labs.filter((l) => !broken.has(l)), problems };
}

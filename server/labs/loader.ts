/**
 * Reads and validates labs. Every problem is reported with file:line:col,
 * the field path, what was expected and - for misspelt keys - a did-you-mean;
 * all problems of all labs at once, never just the first.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
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
  // A NUL (YAML's "\0") cannot reach bash: a script runs as an argument.
  for (const [p, body] of scripts)
    if (body.includes('\0'))
      problems.push({
        file,
        ...loc.at(p),
        field: fieldPath(p),
        message: 'a script may not hold a NUL character ("\\0"): it could never run',
      });
  for (const [k, err] of syntax(scripts.map(([, s]) => (s.includes('\0') ? 'true' : s)))) {
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

/**
 * Scripts as one bash input, each the body of a function of its own, named
 * with a nonce (no script names them by chance). bash >= 5.2 can print what
 * it parsed without running anything (`--pretty-print`): when every one of
 * these functions comes out as a function, in order, no script's open quote
 * or construct ran on into the next script's text (`echo "hi` closed by a
 * later `done"` would hide both), so the scripts parse apart as they run.
 */
interface Wrapped {
  text: string;
  names: string[];
}
const NONCE = randomBytes(4).toString('hex');
function asFunctions(scripts: string[], tag = ''): Wrapped {
  const names = scripts.map((_, i) => `__underlay_${NONCE}_${tag}${i}`);
  return { text: scripts.map((x, i) => `${names[i]}() {\n${x}\n}\n`).join(''), names };
}

/** bash prints back about what it read: labs' scripts are far below this. */
const MAX_PRINTED = 64 * 1024 * 1024;

/**
 * The environment of every parse: without BASH_ENV (and ENV), which a
 * non-interactive bash would run first, even to only parse.
 */
function parseEnv(): NodeJS.ProcessEnv {
  return { ...process.env, BASH_ENV: undefined, ENV: undefined };
}

/** Whether this host's bash has `--pretty-print` (5.2 and later). */
let prettyPrint: boolean | undefined;
function canPrettyPrint(): boolean {
  prettyPrint ??=
    spawnSync('bash', ['--pretty-print', '/dev/null'], { env: parseEnv() }).status === 0;
  return prettyPrint;
}

/**
 * Whether bash's printed parse is the wrapper functions `names`, in order,
 * and nothing else. A function prints as `name () `, `{ `, its body
 * indented, and `}` at the start of a line. A wrapper swallowed into
 * another script's string prints as written (`name() {`), and a script's
 * stray `}` that ends its wrapper early leaves text of its own between two
 * wrappers: either fails the match, and then the exact path decides (as
 * does a heredoc or string line that starts with `}`: only slower).
 */
function functionsApart(printed: string, names: string[]): boolean {
  const lines = printed.split('\n');
  let k = 0;
  const nextText = () => {
    while (k < lines.length && !(lines[k] as string).trim()) k++;
    return lines[k];
  };
  for (const name of names) {
    if (nextText()?.trimEnd() !== `${name} ()`) return false;
    while (++k < lines.length && !(lines[k] as string).startsWith('}'));
    if (k++ >= lines.length) return false;
  }
  return nextText() === undefined;
}

/**
 * `texts` as files of a fresh private folder, for bash to read: a script
 * read from a pipe is read a byte per syscall (0.4 s for the repository's
 * labs, against 40 ms from a file).
 */
function withFiles<T>(texts: string[], use: (files: string[]) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-parse-'));
  try {
    const files = texts.map((t, i) => {
      const f = path.join(dir, `${i}.sh`);
      fs.writeFileSync(f, t);
      return f;
    });
    return use(files);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One parse of `w` by bash, nothing run: whether it parses and every wrapper
 * function came out apart. bash before 5.2 has no `--pretty-print`: there
 * `bash -n` of the whole text, which cannot tell whether one script's open
 * quote ran on into the next (an exact parse per script costs a bash start
 * each, about 5 s for the repository's labs). Never `--pretty-print -c`: that
 * runs the text.
 */
function parsesApart(w: Wrapped): boolean {
  const pretty = canPrettyPrint();
  return withFiles([w.text], ([f]) => {
    const r = spawnSync('bash', [pretty ? '--pretty-print' : '-n', f as string], {
      env: parseEnv(),
      encoding: 'utf8',
      maxBuffer: MAX_PRINTED,
    });
    return r.status === 0 && (!pretty || functionsApart(r.stdout, w.names));
  });
}

/** Whether bash parses every script, each apart from the others, in one spawn. */
function bashParsesAll(scripts: string[]): boolean {
  return !scripts.length || parsesApart(asFunctions(scripts));
}

/**
 * The indexes of the labs (each a list of scripts) that bash may not parse,
 * each script apart: one parse of all, and only when that fails one spawn in
 * which each lab's file goes to a bash of its own. Each lab found is loaded
 * again with the exact parse (bashSyntaxErrors).
 */
function labsNotParsing(labs: string[][]): number[] {
  const withScripts = labs.flatMap((s, k) => (s.length ? [k] : []));
  if (!withScripts.length) return [];
  const inputs = labs.map((s, k) => asFunctions(s, `${k}_`));
  const pretty = canPrettyPrint();
  // The usual case, every lab fine: one parse of all (a bash start per lab
  // costs more than the parse). `bash -n` could not tell labs apart.
  const all = { text: inputs.map((w) => w.text).join(''), names: inputs.flatMap((w) => w.names) };
  if (pretty && parsesApart(all)) return [];
  const r = withFiles(
    inputs.map((w) => w.text),
    (files) =>
      spawnSync(
        'bash',
        [
          '-c',
          // Per lab: its printed parse (none from -n), then NUL, the status, NUL.
          `for f; do bash ${pretty ? '--pretty-print' : '-n'} "$f" 2>/dev/null; printf '\\0%s\\0' "$?"; done`,
          'bash',
          ...files,
        ],
        { env: parseEnv(), encoding: 'utf8', maxBuffer: MAX_PRINTED },
      ),
  );
  const parts = (r.stdout ?? '').split('\0');
  if (r.status !== 0 || parts.length !== 2 * labs.length + 1) return withScripts;
  return withScripts.filter(
    (k) =>
      parts[2 * k + 1] !== '0' ||
      (pretty && !functionsApart(parts[2 * k] as string, (inputs[k] as Wrapped).names)),
  );
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
    { env: parseEnv(), encoding: 'utf8' },
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
  // Bash's parse of every lab, from one spawn: a spawn is a fork of the
  // whole server (45 ms each on a slow host: 0.7 s of a 15-lab start, and of
  // every reload in dev mode). Each script is still parsed apart (one
  // script's open quote must never be closed by another's text); a lab that
  // fails is loaded again with the parse that names file, line and column.
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

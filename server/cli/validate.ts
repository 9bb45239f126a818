/**
 * `underlay validate` and `underlay schema`: the instructor's checks of lab
 * files, with no sandbox (and so no root, SQLite or native module) needed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COHORTS_FILE, loadCohortsFile } from '../classroom/cohorts-file';
import { REPO_LABS } from '../config';
import YAML from 'yaml';
import { formatProblem, loadLabs, type LabProblem, type LoadedLab } from '../labs/loader';
import { labJsonSchema } from '../labs/schema';

export function validate(paths: string[]): number {
  const roots = paths.length ? paths : [REPO_LABS];
  const { labs, problems } = loadLabs(roots);
  // A folder of labs may declare its classes too (docs/classroom.md#cohorts-in-a-file).
  const ids = labs.map((l) => l.lab.metadata.id);
  for (const root of roots) {
    const f = path.join(root, COHORTS_FILE);
    if (fs.existsSync(f)) problems.push(...loadCohortsFile(f, f, ids).problems);
  }
  problems.push(...repositoryIdClashes(roots, labs));
  for (const p of problems) process.stderr.write(formatProblem(p) + '\n');
  const files = new Set(problems.map((p) => p.file)).size;
  process.stdout.write(
    problems.length
      ? `${problems.length} problem${problems.length > 1 ? 's' : ''} in ${files} file${files > 1 ? 's' : ''}; ${labs.length} lab${labs.length === 1 ? '' : 's'} valid\n`
      : `${labs.length} lab${labs.length === 1 ? '' : 's'} valid\n`,
  );
  return problems.length ? 1 : 0;
}

/**
 * A lab validated outside the repository's labs/ (a draft, a course's own
 * folder) whose id a repository lab already uses: it would clash the day
 * both are served, so say so now, where the lab is.
 */
function repositoryIdClashes(roots: string[], labs: LoadedLab[]): LabProblem[] {
  const inRepo = (d: string): boolean => {
    const rel = path.relative(REPO_LABS, path.resolve(d));
    return !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  if (roots.every(inRepo) || !fs.existsSync(REPO_LABS)) return [];
  const repo = new Map<string, string>();
  for (const d of fs.readdirSync(REPO_LABS)) {
    const f = path.join(REPO_LABS, d, 'lab.yaml');
    if (!fs.existsSync(f)) continue;
    const id = (YAML.parse(fs.readFileSync(f, 'utf8')) as { metadata?: { id?: unknown } } | null)
      ?.metadata?.id;
    if (typeof id === 'string') repo.set(id, path.join('labs', d, 'lab.yaml'));
  }
  return labs
    .filter((l) => !inRepo(l.dir) && repo.has(l.lab.metadata.id))
    .map((l) => ({
      file: l.file,
      line: 1,
      col: 1,
      field: 'metadata.id',
      message: `lab id "${l.lab.metadata.id}" is taken by the repository's ${repo.get(l.lab.metadata.id)}; rename one before they are served together`,
    }));
}

export function schema(opts: { check: boolean; out?: string }): number {
  const file = opts.out ?? path.join(REPO_LABS, 'lab.schema.json');
  const text = JSON.stringify(labJsonSchema(), null, 2) + '\n';
  if (opts.check) {
    const cur = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (cur !== text) {
      process.stderr.write(`underlay: ${file} is stale; run \`underlay schema\` and commit it\n`);
      return 1;
    }
    process.stdout.write(`${file} is up to date\n`);
    return 0;
  }
  fs.writeFileSync(file, text);
  process.stdout.write(`wrote ${file}\n`);
  return 0;
}

/**
 * `underlay validate` and `underlay schema`: the instructor's checks of lab
 * files, with no sandbox (and so no root, SQLite or native module) needed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COHORTS_FILE, loadCohortsFile } from '../classroom/cohorts-file';
import { REPO_LABS } from '../config';
import { formatProblem, loadLabs } from '../labs/loader';
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
  for (const p of problems) process.stderr.write(formatProblem(p) + '\n');
  const files = new Set(problems.map((p) => p.file)).size;
  process.stdout.write(
    problems.length
      ? `${problems.length} problem${problems.length > 1 ? 's' : ''} in ${files} file${files > 1 ? 's' : ''}; ${labs.length} lab${labs.length === 1 ? '' : 's'} valid\n`
      : `${labs.length} lab${labs.length === 1 ? '' : 's'} valid\n`,
  );
  return problems.length ? 1 : 0;
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

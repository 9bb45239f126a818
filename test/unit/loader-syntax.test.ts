/**
 * The loader parses each lab's scripts with a `bash -n` of its own, all from
 * one spawn (server/labs/loader.ts loadLabs); a lab that fails is loaded
 * again with the parse that names file, line and column, and the good labs
 * beside it still load.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadLabs } from '../../server/labs/loader';
import { REPO } from '../helpers/env';

test('one broken script among many labs: the others load, the error names its line and column', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-loader-'));
  try {
    for (const lab of ['ns-uts-ipc', 'ns-pid'])
      fs.cpSync(path.join(REPO, 'labs', lab), path.join(dir, lab), { recursive: true });
    const broken = path.join(REPO, 'test', 'fixtures', 'labs', 'invalid', 'bash-syntax');
    fs.cpSync(broken, path.join(dir, 'bash-syntax'), { recursive: true });
    const r = loadLabs([dir]);
    assert.deepEqual(r.labs.map((l) => l.lab.metadata.id).sort(), ['ns-pid', 'ns-uts-ipc']);
    // The same lines as the golden case (test/system/labs.test.ts), from the copy.
    const expected = fs
      .readFileSync(path.join(broken, 'expected-error.txt'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.slice(l.indexOf('lab.yaml:') + 'lab.yaml:'.length));
    assert.deepEqual(
      r.problems.map((p) => `${p.line}:${p.col}: ${p.field}: ${p.message}`),
      expected,
    );
    assert.ok(r.problems.every((p) => p.file.endsWith(path.join('bash-syntax', 'lab.yaml'))));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("one lab's open quote is never closed by another lab's text", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-loader-'));
  const lab = (id: string, setup: string) => `apiVersion: underlay.dev/v1
kind: Lab
metadata:
  id: ${id}
  title: T
  summary: S
  duration: 5
  difficulty: beginner
setup: |
  ${setup}
steps:
  - id: s
    title: S
    instructions: Do it.
    check:
      script: 'true'
    solution: 'true'
`;
  try {
    // Alone, the first does not parse (an apostrophe opens a quote) and the
    // second does (its apostrophe is in a comment); in one parse of both the
    // comment's apostrophe would close the first lab's quote.
    for (const [id, setup] of [
      ['a-open-quote', "echo don't"],
      ['b-comment', "# it's fine"],
    ] as const) {
      fs.mkdirSync(path.join(dir, id));
      fs.writeFileSync(path.join(dir, id, 'lab.yaml'), lab(id, setup));
    }
    const r = loadLabs([dir]);
    assert.deepEqual(
      r.labs.map((l) => l.lab.metadata.id),
      ['b-comment'],
    );
    assert.equal(r.problems.length, 1, JSON.stringify(r.problems));
    assert.match(r.problems[0]!.file, /a-open-quote\/lab\.yaml$/);
    assert.equal(r.problems[0]!.field, 'setup');
    assert.match(r.problems[0]!.message, /bash cannot parse this script/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every lab in the repository parses', () => {
  const r = loadLabs([path.join(REPO, 'labs')]);
  assert.deepEqual(r.problems, []);
  assert.ok(r.labs.length >= 15, `${r.labs.length} labs`);
});

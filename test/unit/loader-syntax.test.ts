/**
 * The loader parses every lab's scripts in one bash, each script apart from
 * the others (server/labs/loader.ts loadLabs); a lab that fails is loaded
 * again with the parse that names file, line and column, and the good labs
 * beside it still load.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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

// Told apart with bash's --pretty-print (5.2 and later); an older bash has
// only `bash -n` of the lab's scripts together (server/labs/loader.ts).
const prettyPrint = spawnSync('bash', ['--pretty-print', '/dev/null']).status === 0;

test(
  "within one lab, one script's open quote is never closed by another script's text",
  {
    skip: prettyPrint ? false : 'this bash has no --pretty-print (bash 5.2 and later)',
  },
  () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-loader-'));
    // Alone, the setup does not parse (an apostrophe opens a quote) and the
    // check does (its apostrophe is in a comment); parsed as one text, the
    // check's apostrophe would close the setup's quote and hide the error.
    const yaml = `apiVersion: underlay.dev/v1
kind: Lab
metadata:
  id: one-lab
  title: T
  summary: S
  duration: 5
  difficulty: beginner
setup: |
  echo don't
steps:
  - id: s
    title: S
    instructions: Do it.
    check:
      script: |
        # it's fine
        pass ok
    solution: 'true'
`;
    try {
      fs.mkdirSync(path.join(dir, 'one-lab'));
      fs.writeFileSync(path.join(dir, 'one-lab', 'lab.yaml'), yaml);
      // After a good lab (one parse for all, then one per lab) and alone.
      fs.cpSync(path.join(REPO, 'labs', 'ns-uts-ipc'), path.join(dir, 'a-good'), {
        recursive: true,
      });
      for (const [at, good] of [
        [dir, ['ns-uts-ipc']],
        [path.join(dir, 'one-lab'), []],
      ] as const) {
        const r = loadLabs([at]);
        assert.deepEqual(
          r.labs.map((l) => l.lab.metadata.id),
          good,
        );
        assert.deepEqual(
          r.problems.map((p) => `${p.line}:${p.col}: ${p.field}`),
          ['10:3: setup'],
        );
        assert.match(r.problems[0]!.message, /bash cannot parse this script \(line 1 of it\)/);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("a script's stray } that another block closes again is found, as is a NUL", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-loader-'));
  // Each alone is a syntax error (bash -c stops at the stray `}`); wrapped
  // as a function body, the wrapper's own `}` closes what the script opened.
  const strays = [':\n}\n{ :', ':\n}\nf() {\n:', ':\n} >/dev/null\n{ :'];
  const yaml = `apiVersion: underlay.dev/v1
kind: Lab
metadata:
  id: strays
  title: T
  summary: S
  duration: 5
  difficulty: beginner
steps:
  - id: s
    title: S
    instructions: Do it.
    check:
      script: "pass ok"
    hints:
${strays.map((x) => `      - script: ${JSON.stringify(x)}`).join('\n')}
      - script: "echo a\\0b"
    solution: 'true'
`;
  try {
    fs.mkdirSync(path.join(dir, 'strays'));
    fs.writeFileSync(path.join(dir, 'strays', 'lab.yaml'), yaml);
    const r = loadLabs([dir]);
    assert.deepEqual(r.labs, []);
    assert.deepEqual(
      r.problems.map((p) => `${p.field}: ${p.message.replace(/ \(line.*/, '')}`),
      [
        'steps[0].hints[3].script: a script may not hold a NUL character ("\\0"): it could never run',
        ...strays.map((_, j) => `steps[0].hints[${j}].script: bash cannot parse this script`),
      ],
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('every lab in the repository parses', () => {
  const r = loadLabs([path.join(REPO, 'labs')]);
  assert.deepEqual(r.problems, []);
  assert.ok(r.labs.length >= 15, `${r.labs.length} labs`);
});

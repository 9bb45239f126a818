/**
 * The loader parses every lab's scripts with one `bash -n` (server/labs/loader.ts
 * loadLabs); when that parse fails, each lab is parsed again on its own so
 * the error still names file, line and column, and the good labs beside
 * the broken one still load.
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

test('every lab in the repository parses in the one combined pass', () => {
  const r = loadLabs([path.join(REPO, 'labs')]);
  assert.deepEqual(r.problems, []);
  assert.ok(r.labs.length >= 15, `${r.labs.length} labs`);
});

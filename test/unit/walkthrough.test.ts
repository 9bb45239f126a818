/**
 * Which code blocks of a lab text are runnable, and in which terminal: the
 * same rule the Run button follows (web/lib/markdown.tsx).
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { codeBlocks } from '../../server/labs/walkthrough';

test('sh/bash blocks run, in terminal=NAME or the first terminal; others and norun do not', () => {
  const md = [
    'Text',
    '```sh terminal=T2',
    'unshare --uts bash',
    'hostname x',
    '```',
    '```bash',
    'ls',
    '```',
    '```text',
    'not a command',
    '```',
    '```sh norun',
    'rm -rf /',
    '```',
    '```python',
    'print(1)',
    '```',
  ].join('\n');
  assert.deepEqual(codeBlocks(md, 'T1'), [
    { terminal: 'T2', code: 'unshare --uts bash\nhostname x' },
    { terminal: 'T1', code: 'ls' },
  ]);
});

test('no blocks in plain text', () => {
  assert.deepEqual(codeBlocks('just `inline` code', 'T1'), []);
});

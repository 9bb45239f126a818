/**
 * A step's cgroup-version variant: its fields replace the step's, except the
 * text, which is added after the step's own (an introduction shared by both
 * versions must not vanish on either).
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { effectiveStep } from '../../server/labs/loader';
import type { Step } from '../../server/labs/schema';

const step = {
  id: 's',
  title: 'S',
  instructions: 'Shared introduction.\n',
  check: { script: 'pass both', timeout: 10 },
  hints: [],
  nearMisses: [],
  variants: {
    v1: { instructions: 'On v1: `cpu.shares`.', check: { script: 'pass v1', timeout: 10 } },
    v2: { check: { script: 'pass v2', timeout: 10 } },
  },
} as unknown as Step;

test("a variant's text follows the step's; its other fields replace the step's", () => {
  const v1 = effectiveStep(step, 'v1');
  assert.equal(v1.instructions, 'Shared introduction.\n\nOn v1: `cpu.shares`.');
  assert.equal(v1.check?.script, 'pass v1');
  const v2 = effectiveStep(step, 'v2');
  assert.equal(v2.instructions, 'Shared introduction.\n', 'no text of its own: the shared one');
  assert.equal(v2.check?.script, 'pass v2');
  const plain = { ...step, variants: undefined } as unknown as Step;
  assert.equal(effectiveStep(plain, 'v1'), plain);
});

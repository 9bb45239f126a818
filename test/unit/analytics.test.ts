/**
 * Class analytics from recorded events (server/classroom/analytics.ts):
 * completion, median time from reaching a step to its pass, checks per
 * pass, hint use; a lab reset starts a student's count over.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { median, stepAnalytics, type LabEvent } from '../../server/classroom/analytics';

const ev = (step: string, kind: string, at: number, detail: unknown = {}): LabEvent => ({
  step,
  kind,
  detail,
  at,
});

test('median of odd, even and empty lists', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([]), undefined);
});

test('per step: passed of started, median time from reaching the step, checks per pass, hinted', () => {
  const ann = [
    ev('a', 'check-fail', 1_000),
    ev('a', 'hint', 2_000, { hint: 'look at /proc' }),
    ev('a', 'check-pass', 11_000), // reached at 1 000 (first action): 10 s, 2 checks
    ev('b', 'check-pass', 41_000), // reached at 11 000: 30 s, 1 check
  ];
  const bo = [
    ev('a', 'check-pass', 5_000), // his first action: 0 s, 1 check
    ev('b', 'hint', 6_000, { hint: null }), // a hint that said nothing: not counted
    ev('b', 'check-fail', 7_000),
  ];
  const cy = [
    ev('a', 'skip', 100),
    ev('b', 'check-pass', 20_100), // reached at the skip: 20 s
  ];
  const nobody: LabEvent[] = [];
  const [a, b] = stepAnalytics('lab', ['a', 'b'], [ann, bo, cy, nobody]);
  assert.deepEqual(a, {
    lab: 'lab',
    step: 'a',
    started: 3,
    passed: 2,
    skipped: 1,
    completion: 2 / 3,
    medianMs: 5_000,
    checksPerPass: 1.5,
    hinted: 1,
  });
  assert.deepEqual(b, {
    lab: 'lab',
    step: 'b',
    started: 3,
    passed: 2,
    skipped: 0,
    completion: 2 / 3,
    medianMs: 25_000,
    checksPerPass: 1,
    hinted: 0,
  });
});

test('a lab reset starts the count over; a step nobody passed has no time', () => {
  const dee = [
    ev('a', 'check-pass', 1_000),
    ev('', 'reset-lab', 2_000),
    ev('a', 'check-fail', 3_000),
  ];
  const [a, b] = stepAnalytics('lab', ['a', 'b'], [dee]);
  assert.equal(a?.started, 1);
  assert.equal(a?.passed, 0, 'the pass before the reset is forgotten');
  assert.equal(a?.medianMs, undefined);
  assert.equal(a?.checksPerPass, undefined);
  assert.equal(b?.completion, 0);
  assert.deepEqual(stepAnalytics('lab', ['a'], [[ev('', 'reset-lab', 1)]])[0]?.started, 0);
});

/**
 * The gradebook export (server/classroom/export.ts): one row per student and
 * step in the class's order, defaults for steps never tried, and CSV that a
 * spreadsheet reads as data: quotes doubled, and a name that looks like a
 * formula neutralised.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportRows, toCsv } from '../../server/classroom/export';

const members = [
  { cohort: 'c', student: 's1', display: 'Ann "A" Lee, jr', joined: Date.UTC(2026, 11, 7, 9) },
  {
    cohort: 'c',
    student: 's2',
    display: '=HYPERLINK("http://x")',
    joined: Date.UTC(2026, 11, 7, 9, 5),
  },
  // A spreadsheet in a `;` locale would split an unquoted cell at the `;`.
  {
    cohort: 'c',
    student: 's3',
    display: "x;=cmd|' /C calc'!A0;",
    joined: Date.UTC(2026, 11, 7, 9, 6),
  },
  // Two students who typed one name: told apart by their keys.
  { cohort: 'c', student: 's4', display: 'Ann "A" Lee, jr', joined: Date.UTC(2026, 11, 7, 9, 7) },
];
const labs = [
  { id: 'l1', steps: ['a', 'b'] },
  { id: 'l2', steps: ['z'] },
];

test('rows per student and step, in order, with defaults; CSV quoting and formula cells', () => {
  const rows = exportRows(
    'c',
    members,
    labs,
    (student, lab) =>
      student === 's1' && lab === 'l1'
        ? {
            a: {
              passed: true,
              skipped: false,
              attempts: 3,
              hintsShown: 1,
              passedAt: Date.UTC(2026, 11, 7, 9, 30),
            },
          }
        : undefined,
    (m) => `key-${m.student}`,
  );
  assert.deepEqual(
    rows.map(
      (r) => `${r.student}|${r.lab}/${r.step}|${r.passed}|${r.attempts}|${r.hints}|${r.passedAt}`,
    ),
    [
      'Ann "A" Lee, jr|l1/a|true|3|1|2026-12-07T09:30:00.000Z',
      'Ann "A" Lee, jr|l1/b|false|0|0|',
      'Ann "A" Lee, jr|l2/z|false|0|0|',
      '=HYPERLINK("http://x")|l1/a|false|0|0|',
      '=HYPERLINK("http://x")|l1/b|false|0|0|',
      '=HYPERLINK("http://x")|l2/z|false|0|0|',
      "x;=cmd|' /C calc'!A0;|l1/a|false|0|0|",
      "x;=cmd|' /C calc'!A0;|l1/b|false|0|0|",
      "x;=cmd|' /C calc'!A0;|l2/z|false|0|0|",
      'Ann "A" Lee, jr|l1/a|false|0|0|',
      'Ann "A" Lee, jr|l1/b|false|0|0|',
      'Ann "A" Lee, jr|l2/z|false|0|0|',
    ],
  );
  const csv = toCsv(rows).split('\r\n');
  assert.equal(csv[0], 'cohort,student,joined,lab,step,passed,skipped,attempts,hints,passedAt,key');
  assert.equal(
    csv[1],
    'c,"Ann ""A"" Lee, jr",2026-12-07T09:00:00.000Z,l1,a,true,false,3,1,2026-12-07T09:30:00.000Z,key-s1',
  );
  assert.equal(
    csv[4],
    'c,"\'=HYPERLINK(""http://x"")",2026-12-07T09:05:00.000Z,l1,a,false,false,0,0,,key-s2',
  );
  assert.equal(
    csv[7],
    'c,"x;=cmd|\' /C calc\'!A0;",2026-12-07T09:06:00.000Z,l1,a,false,false,0,0,,key-s3',
  );
  assert.match(csv[10] ?? '', /^c,"Ann ""A"" Lee, jr",.*,key-s4$/);
  assert.equal(csv.length, 14, 'a header, twelve rows and the final line end');
});

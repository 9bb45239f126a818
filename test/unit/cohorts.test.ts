/**
 * Cohorts (server/classroom/cohorts.ts): the rules a class runs by. A join
 * is refused, with the rule named, for an unknown code, a closed class, one
 * not yet open or ended, and when every seat is taken; joining again takes
 * no second seat; the instructor token is checked against a hash and never
 * stored.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  closeCohort,
  cohortState,
  classWants,
  warmHeld,
  warmTotals,
  createCohort,
  formatCode,
  instructorAllowed,
  joinCohort,
  normalizeCode,
} from '../../server/classroom/cohorts';
import { loadCohortsFile, syncCohorts } from '../../server/classroom/cohorts-file';
import { REPO_LABS } from '../../server/config';
import { loadLabs } from '../../server/labs/loader';
import { type CohortRow, Store } from '../../server/store/store';
import { heldShare } from '../../server/labs/warm-pool';
import { RequestError } from '../../server/util/errors';

const LABS = ['ns-pid', 'ns-uts-ipc', 'cg-cpu-quota'];

let lastDir = '';
const dirs: string[] = [];
function tempStore(): Store {
  lastDir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-cohorts-'));
  dirs.push(lastDir);
  return new Store(lastDir);
}
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function refused(fn: () => unknown, kind: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RequestError, String(e));
    assert.equal(e.kind, kind);
    assert.match(e.message, message);
    assert.ok(e.hint, 'a refusal says what to do');
    return true;
  });
}

test('a cohort gets a readable join code and a token that is stored only as a hash', () => {
  const s = tempStore();
  const { cohort, token } = createCohort(s, { name: 'fri-101', labs: ['ns-pid'] }, LABS);
  assert.match(formatCode(cohort.code), /^[A-Z2-9]{4}-[A-Z2-9]{4}$/);
  // Many codes, so that a look-alike in the alphabet shows up (one did: a 5).
  const codes = Array.from(
    { length: 200 },
    (_, i) => createCohort(s, { name: `many-${i}`, labs: ['ns-pid'] }, LABS).cohort.code,
  ).join('');
  assert.doesNotMatch(codes, /[01OILSB58]/, 'no look-alike characters');
  assert.equal(new Set(codes).size, 27, 'every one of the 27 characters is used');
  assert.equal(normalizeCode(` ${formatCode(cohort.code).toLowerCase()} `), cohort.code);
  assert.ok(instructorAllowed(cohort, token));
  assert.ok(!instructorAllowed(cohort, token.slice(1)));
  const db = fs.readFileSync(
    path.join(path.dirname((s as unknown as { db: { name: string } }).db.name), 'underlay.db'),
  );
  assert.ok(!db.includes(Buffer.from(token)), 'the token itself is not in the database');
  refused(() => createCohort(s, { name: 'fri-101', labs: ['ns-pid'] }, LABS), 'conflict', /exists/);
  refused(() => createCohort(s, { name: 'x', labs: ['nope'] }, LABS), 'invalid', /no lab "nope"/);
  refused(() => createCohort(s, { name: 'Bad Name', labs: ['ns-pid'] }, LABS), 'invalid', /name/);
  refused(
    () => createCohort(s, { name: 'y', labs: ['ns-pid'], starts: 2000, ends: 1000 }, LABS),
    'invalid',
    /ends before it starts/,
  );
  s.close();
});

test('joining: unknown code, bad name, window, seats, closed; joining again takes no seat', () => {
  const s = tempStore();
  const now = Date.parse('2026-12-07T10:00:00Z');
  const { cohort } = createCohort(
    s,
    {
      name: 'c1',
      labs: ['ns-pid'],
      seats: 2,
      starts: Date.parse('2026-12-07T09:00:00Z'),
      ends: Date.parse('2026-12-07T12:00:00Z'),
    },
    LABS,
  );
  const code = formatCode(cohort.code);
  refused(
    () => joinCohort(s, 'AAAA-AAAA', 'Ann', 'st-a', now),
    'not-found',
    /no class has the code/,
  );
  refused(() => joinCohort(s, 'not a code', 'Ann', 'st-a', now), 'not-found', /no class/);
  refused(() => joinCohort(s, code, '   ', 'st-a', now), 'invalid', /display name/);
  refused(() => joinCohort(s, code, 'x'.repeat(41), 'st-a', now), 'invalid', /display name/);
  refused(() => joinCohort(s, code, 'A\u0007nn', 'st-a', now), 'invalid', /display name/);
  // Looks like "Ann" on the roster: a zero-width space, a right-to-left override.
  refused(() => joinCohort(s, code, 'An\u200bn', 'st-a', now), 'invalid', /invisible/);
  refused(() => joinCohort(s, code, '\u202eAnn', 'st-a', now), 'invalid', /invisible/);
  refused(
    () => joinCohort(s, code, 'Ann', 'st-a', Date.parse('2026-12-07T08:59:00Z')),
    'forbidden',
    /opens at 2026-12-07T09:00Z/,
  );
  refused(
    () => joinCohort(s, code, 'Ann', 'st-a', Date.parse('2026-12-07T12:00:00Z')),
    'forbidden',
    /ended at 2026-12-07T12:00Z/,
  );

  const a = joinCohort(s, code.toLowerCase(), '  Ann   Lee ', 'st-a', now);
  assert.equal(a.member.display, 'Ann Lee');
  assert.equal(a.again, false);
  assert.equal(joinCohort(s, code, 'Bo', 'st-b', now).again, false);
  refused(() => joinCohort(s, code, 'Cy', 'st-c', now), 'forbidden', /all 2 seats/);
  // Ann again, from another device and under another name: her seat, renamed.
  const again = joinCohort(s, code, 'Ann L.', 'st-a', now);
  assert.equal(again.again, true);
  assert.deepEqual(
    s.members('c1').map((m) => m.display),
    ['Ann L.', 'Bo'],
  );

  closeCohort(s, 'c1');
  assert.equal(cohortState(s.getCohort('c1')!, now), 'closed');
  refused(() => joinCohort(s, code, 'Ann', 'st-a', now), 'forbidden', /closed/);
  assert.equal(s.members('c1').length, 2, 'closing keeps the students');
  s.close();
});

test("a code changed in the cohorts file is the class's code at once: the new one joins, the old one no longer", () => {
  const s = tempStore();
  try {
    const declared = (code: string) => [
      {
        name: 'fri-101',
        labs: ['ns-pid'],
        tokenHash: '0'.repeat(64),
        code,
        closed: false,
      },
    ];
    syncCohorts(s, declared('ACDEFG23'), () => 'XXXXXXXX');
    assert.equal(joinCohort(s, 'ACDE-FG23', 'Ann', 'st-a').cohort.name, 'fri-101');
    // The code leaked: the instructor changes it in the file and syncs.
    assert.deepEqual(syncCohorts(s, declared('KMNPQRTU'), () => 'XXXXXXXX').updated, ['fri-101']);
    assert.equal(joinCohort(s, 'KMNP-QRTU', 'Bo', 'st-b').cohort.name, 'fri-101');
    refused(() => joinCohort(s, 'ACDE-FG23', 'Cy', 'st-c'), 'not-found', /no class/);
    // And another class may not take the new one.
    assert.throws(
      () =>
        syncCohorts(
          s,
          [...declared('KMNPQRTU'), { ...declared('KMNPQRTU')[0]!, name: 'sat-101' }],
          () => 'XXXXXXXX',
        ),
      /its code is cohort fri-101's/,
    );
  } finally {
    s.close();
    fs.rmSync(lastDir, { recursive: true, force: true });
  }
});

test('a store from before the fix, whose code column kept an old code, is mended when opened', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-cohorts-'));
  try {
    let s = new Store(dir);
    createCohort(s, { name: 'a', labs: ['ns-pid'] }, LABS);
    createCohort(s, { name: 'b', labs: ['ns-pid'] }, LABS);
    const a = s.getCohort('a')!;
    const b = s.getCohort('b')!;
    // As the old updateCohort left it: the body's code changed, the column not.
    const db = (s as unknown as { db: { prepare(q: string): { run(...a: unknown[]): void } } }).db;
    db.prepare('UPDATE cohorts SET body = ? WHERE name = ?').run(
      JSON.stringify({ ...a, code: 'KMNPQRTU' }),
      'a',
    );
    // And a body that claims another cohort's code (it cannot have it).
    db.prepare('UPDATE cohorts SET body = ? WHERE name = ?').run(
      JSON.stringify({ ...b, code: 'KMNPQRTU' }),
      'b',
    );
    s.close();
    s = new Store(dir);
    // One of the two got the code; the other shows the code it still joins by.
    for (const name of ['a', 'b']) {
      const c = s.getCohort(name)!;
      assert.equal(s.cohortByCode(c.code)?.name, name, `${name} joins by the code it shows`);
    }
    assert.equal(s.cohortByCode('KMNPQRTU')?.code, 'KMNPQRTU');
    s.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the example cohorts file (labs/cohorts.example.yaml) is valid against the repo labs', () => {
  const file = path.join(REPO_LABS, 'cohorts.example.yaml');
  const ids = loadLabs([REPO_LABS]).labs.map((l) => l.lab.metadata.id);
  const r = loadCohortsFile(file, file, ids);
  assert.deepEqual(r.problems, []);
  assert.deepEqual(
    r.cohorts?.map((c) => [c.name, c.code, c.closed]),
    [
      ['containers-101', 'ACDEFG23', false],
      ['containers-102', undefined, true],
    ],
  );
});

test("a class's warm seats are wanted from 15 minutes before it starts until it ends, unless closed, less those its students took", () => {
  const t = Date.parse('2027-01-11T09:00Z');
  const row = (over: Partial<CohortRow>): CohortRow => ({
    name: 'c',
    code: 'ACDEFG23',
    tokenHash: '0'.repeat(64),
    labs: ['ns-pid', 'ns-uts-ipc'],
    closed: false,
    created: 0,
    ...over,
  });
  const day = row({ warm: { 'ns-pid': 30 }, starts: t, ends: t + 8 * 3_600_000 });
  const at = (now: number, ...cs: CohortRow[]) => Object.fromEntries(warmTotals(warmHeld(cs, now)));
  assert.deepEqual(at(t - 16 * 60_000, day), {});
  assert.deepEqual(at(t - 14 * 60_000, day), { 'ns-pid': 30 });
  assert.deepEqual(at(t + 8 * 3_600_000 - 1, day), { 'ns-pid': 30 });
  assert.deepEqual(at(t + 8 * 3_600_000, day), {});
  assert.deepEqual(at(t, { ...day, closed: true }), {});
  // No window: while open. Two classes on at once: the sum per lab.
  const always = row({ name: 'd', warm: { 'ns-pid': 5, 'ns-uts-ipc': 2 } });
  assert.deepEqual(at(t, day, always), { 'ns-pid': 35, 'ns-uts-ipc': 2 });
  assert.deepEqual(at(t, row({ name: 'e' })), {});
  // Each student of the class with the lab started uses one: no second
  // class's worth behind the first.
  const started = (n: number) =>
    Object.fromEntries(
      warmTotals(warmHeld([day, always], t, (c, lab) => (c === 'c' && lab === 'ns-pid' ? n : 0))),
    );
  assert.deepEqual(started(12), { 'ns-pid': 23, 'ns-uts-ipc': 2 });
  assert.deepEqual(started(40), { 'ns-pid': 5, 'ns-uts-ipc': 2 });
  // Which classes hold them (a student of neither takes only seats beyond these).
  assert.deepEqual(Object.fromEntries(warmHeld([day, always], t, (c) => (c === 'c' ? 30 : 0))), {
    'ns-pid': [{ cohort: 'd', left: 5 }],
    'ns-uts-ipc': [{ cohort: 'd', left: 2 }],
  });
  assert.deepEqual(Object.fromEntries(warmHeld([day, always], t))['ns-pid'], [
    { cohort: 'c', left: 30 },
    { cohort: 'd', left: 5 },
  ]);
});

test('warm seats given to cohort create: checked against the class, kept with it', () => {
  const s = tempStore();
  try {
    const spec = { name: 'warm-101', labs: ['ns-pid', 'ns-uts-ipc'], seats: 20 };
    const hintOf = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return `${(e as Error).message} / ${(e as RequestError).hint}`;
      }
      assert.fail('not refused');
    };
    assert.match(
      hintOf(() => createCohort(s, { ...spec, warm: { 'ns-pd': 3 } }, LABS)),
      /"ns-pd": not one of the class's labs \/ did you mean "ns-pid"\?/,
    );
    // A lab of this server but not of the class is refused too.
    refused(
      () => createCohort(s, { ...spec, warm: { 'cg-cpu-quota': 3 } }, LABS),
      'invalid',
      /not one of the class's labs/,
    );
    for (const n of [0, 1001, 2.5])
      refused(
        () => createCohort(s, { ...spec, seats: undefined, warm: { 'ns-pid': n } }, LABS),
        'invalid',
        /is not a count from 1 to 1000/,
      );
    refused(
      () => createCohort(s, { ...spec, warm: { 'ns-pid': 21 } }, LABS),
      'invalid',
      /21 warm seats of ns-pid for a class of 20 seats/,
    );
    assert.equal(s.getCohort('warm-101'), undefined, 'nothing stored by a refused create');
    createCohort(s, { ...spec, warm: { 'ns-pid': 20, 'ns-uts-ipc': 1 } }, LABS);
    assert.deepEqual(s.getCohort('warm-101')?.warm, { 'ns-pid': 20, 'ns-uts-ipc': 1 });
  } finally {
    s.close();
    fs.rmSync(lastDir, { recursive: true, force: true });
  }
});

test('warm seats in a cohorts file: checked against the class (file:line:col) and kept by sync', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-cohorts-warm-'));
  try {
    const file = path.join(dir, 'cohorts.yaml');
    const write = (warm: string) =>
      fs.writeFileSync(
        file,
        [
          'cohorts:',
          '  - name: mon-101',
          '    labs: [ns-pid, ns-uts-ipc]',
          `    instructorTokenSha256: '${'0'.repeat(64)}'`,
          '    seats: 20',
          `    warm: ${warm}`,
          '',
        ].join('\n'),
      );
    write('{ ns-pid: 30, cg-cpu-quota: 5 }');
    const bad = loadCohortsFile(file, 'cohorts.yaml', LABS);
    assert.equal(bad.cohorts, undefined);
    assert.deepEqual(
      bad.problems.map((p) => `${p.line}:${p.col}: ${p.field}: ${p.message}`),
      [
        '6:21: cohorts[0].warm.ns-pid: 30 warm seats for a class of 20 seats',
        `6:39: cohorts[0].warm.cg-cpu-quota: "cg-cpu-quota" is not one of this class's labs (labs: ns-pid, ns-uts-ipc)`,
      ],
    );
    write('{ ns-pid: 0, ns-uts-ipc: two }');
    assert.deepEqual(
      loadCohortsFile(file, 'cohorts.yaml', LABS).problems.map((p) => `${p.field}: ${p.message}`),
      [
        'cohorts[0].warm.ns-pid: a whole number of seats, from 1 to 1000',
        'cohorts[0].warm.ns-uts-ipc: a whole number of seats, from 1 to 1000',
      ],
    );
    write('{ ns-pid: 20 }');
    const good = loadCohortsFile(file, 'cohorts.yaml', LABS);
    assert.deepEqual(good.problems, []);
    const store = tempStore();
    try {
      syncCohorts(store, good.cohorts ?? [], () => 'ACDEFG23');
      assert.deepEqual(store.getCohort('mon-101')?.warm, { 'ns-pid': 20 });
    } finally {
      store.close();
      fs.rmSync(lastDir, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Students arriving one at a time at a pool of `ready` seats (not refilled),
 * each a student of the class named (or of none, '-'): who takes a seat, by
 * heldShare, and each take by a class's student lowers that class's figure
 * (as its students having the lab do in serve).
 */
function arrive(
  classes: Record<string, number>,
  ready: number,
  arrivals: string,
): Record<string, number> {
  const left = { ...classes };
  const got: Record<string, number> = {};
  for (const who of arrivals.split(' ')) {
    const own = left[who] ?? 0;
    let others = 0;
    for (const [c, n] of Object.entries(left)) if (c !== who) others += n;
    if (ready > heldShare({ own, others }, ready)) {
      ready--;
      if (who in left) left[who] = Math.max(0, own - 1);
      got[who] = (got[who] ?? 0) + 1;
    }
  }
  return got;
}
const times = (who: string, n: number) => Array(n).fill(who).join(' ');

test('warm seats held for classes: students arriving one by one take what is theirs, and nobody drains a class', () => {
  // `serve --warm 40` beside a class wanting 30: ten are anyone's.
  assert.deepEqual(arrive({ a: 30 }, 40, times('-', 25)), { '-': 10 });
  // No seats beyond the class's: none for anyone else; all for its students.
  assert.deepEqual(arrive({ a: 30 }, 30, `${times('-', 5)} ${times('a', 30)}`), { a: 30 });
  // Two classes of 30 on a pool of 40 (the host's room): neither locks the
  // other out; each takes at most its own figure.
  assert.deepEqual(arrive({ a: 30, b: 30 }, 40, `${times('a', 40)} ${times('b', 40)}`), {
    a: 30,
    b: 10,
  });
  assert.deepEqual(arrive({ a: 30, b: 30 }, 40, times('a b', 40)), { a: 20, b: 20 });
  assert.deepEqual(arrive({ a: 30, b: 30 }, 2, 'b a'), { a: 1, b: 1 });
  // Two classes of 10 and 30 extra seats: a's latecomers take the extra, not b's.
  assert.deepEqual(arrive({ a: 10, b: 10 }, 40, `${times('a', 40)} ${times('b', 20)}`), {
    a: 30,
    b: 10,
  });
  // A student of a class whose figure is used up is like anyone else.
  assert.deepEqual(arrive({ a: 1, b: 5 }, 6, times('a', 6)), { a: 1 });
});

test("a student's class wants: theirs and the others'; starting over, not one more of theirs", () => {
  const held = new Map([
    [
      'ns-pid',
      [
        { cohort: 'a', left: 3 },
        { cohort: 'b', left: 2 },
      ],
    ],
  ]);
  const inA = (c: string) => c === 'a';
  assert.deepEqual(classWants(held, 'ns-pid', inA), { own: 3, others: 2 });
  assert.deepEqual(classWants(held, 'ns-pid', inA, true), { own: 2, others: 2 });
  assert.deepEqual(
    classWants(held, 'ns-pid', () => false, true),
    { own: 0, others: 5 },
  );
  assert.deepEqual(classWants(held, 'ns-uts-ipc', inA), { own: 0, others: 0 });
});

/**
 * Cohorts: a class of students on a set of labs, joined with a code
 * (docs/classroom.md). This module is the policy: names, codes, tokens,
 * the time window, seats, closing. The store keeps the rows; the CLI and
 * (later) the HTTP join and the instructor views call these functions.
 *
 * The instructor token is shown once, at creation, and only its sha256 is
 * kept: a copy of the database (a backup, an export) does not let anyone
 * watch a class.
 */
import * as crypto from 'node:crypto';
import type { InstructorView } from '../protocol/index';
import type { CohortRow, MemberRow, Store } from '../store/store';
import { RequestError } from '../util/errors';
import { didYouMean } from '../util/yaml-file';
import { stepAnalytics, type LabEvent, type StepFigures } from './analytics';

/** How long a notice stays on students' pages after it was sent. */
export const NOTICE_SHOWN_MS = 60 * 60 * 1000;

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,39}$/;
/** No 0/O, 1/I/L, 5/S, 8/B: a code read aloud or off a projector survives. */
const CODE_ALPHABET = 'ACDEFGHJKMNPQRTUVWXYZ234679';
const CODE_LENGTH = 8;
const DISPLAY_MAX = 40;

export type CohortState = 'open' | 'not-yet-open' | 'ended' | 'closed';

export interface CohortSpec {
  name: string;
  labs: string[];
  starts?: number;
  ends?: number;
  seats?: number;
  /** Warm seats per lab of the class (docs/operating.md#warm-seats). */
  warm?: Record<string, number>;
}

export interface CreatedCohort {
  cohort: CohortRow;
  /** Shown to the instructor once; only its hash is stored. */
  token: string;
}

export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** XXXX-XXXX, as students type and read it. */
export function formatCode(code: string): string {
  return `${code.slice(0, 4)}-${code.slice(4)}`;
}

/** What a student typed (any case, spaces or dashes) as stored; undefined if it cannot be a code. */
export function normalizeCode(typed: string): string | undefined {
  const c = typed.toUpperCase().replace(/[\s-]/g, '');
  if (c.length !== CODE_LENGTH) return undefined;
  for (const ch of c) if (!CODE_ALPHABET.includes(ch)) return undefined;
  return c;
}

/** A fresh join code (not checked against the store). */
export function drawCode(): string {
  let c = '';
  // Rejection sampling: an unbiased pick from the alphabet's 27.
  const below = 256 - (256 % CODE_ALPHABET.length);
  while (c.length < CODE_LENGTH) {
    const b = crypto.randomBytes(1)[0] as number;
    if (b < below) c += CODE_ALPHABET[b % CODE_ALPHABET.length];
  }
  return c;
}

export function cohortState(c: CohortRow, now = Date.now()): CohortState {
  if (c.closed) return 'closed';
  if (c.starts !== undefined && now < c.starts) return 'not-yet-open';
  if (c.ends !== undefined && now >= c.ends) return 'ended';
  return 'open';
}

/** A class's warm seats are made from this long before it starts (the pool fills at about one core). */
export const WARM_LEAD_MS = 15 * 60_000;

/**
 * Warm seats one class wants kept now, per lab of its cohorts.yaml `warm`
 * (docs/classroom.md#cohorts-in-a-file): from WARM_LEAD_MS before it starts
 * until it ends, unless closed; else none. The figure is for its first
 * students: each of its students who has the lab already (started, or a
 * seat taken) counts one seat used (`started`), so the pool does not make a
 * second class's worth of seats behind the first. (Not those who only
 * joined: they open the lab next.)
 */
export function classWarm(
  c: CohortRow,
  now = Date.now(),
  started: (cohort: string, lab: string) => number = () => 0,
): Map<string, number> {
  const out = new Map<string, number>();
  if (!c.warm || c.closed) return out;
  if (c.starts !== undefined && now < c.starts - WARM_LEAD_MS) return out;
  if (c.ends !== undefined && now >= c.ends) return out;
  for (const [lab, n] of Object.entries(c.warm))
    out.set(lab, Math.max(0, n - started(c.name, lab)));
  return out;
}

/**
 * For one student, the seats of a lab the classes still want (warmHeld):
 * by the classes they are in (`own`) and by the rest. A student starting
 * the lab over (a reset: their files were dropped a moment ago) was counted
 * by their classes as having it until then: not one seat more for them.
 */
export function classWants(
  held: ReturnType<typeof warmHeld>,
  lab: string,
  isMember: (cohort: string) => boolean,
  startingOver = false,
): { own: number; others: number } {
  const wants = { own: 0, others: 0 };
  for (const c of held.get(lab) ?? [])
    if (isMember(c.cohort)) wants.own += startingOver ? c.left - 1 : c.left;
    else wants.others += c.left;
  return wants;
}

/** Warm seats wanted per lab by warmHeld's classes: two classes on at once, the sum. */
export function warmTotals(held: ReturnType<typeof warmHeld>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [lab, classes] of held) {
    let n = 0;
    for (const c of classes) n += c.left;
    out.set(lab, n);
  }
  return out;
}

/**
 * Per lab, the classes now on that still want warm seats of it and how
 * many (classWarm): those seats are held for their students (a student of
 * none of them takes only seats beyond these: WarmPool's `held`).
 */
export function warmHeld(
  cohorts: readonly CohortRow[],
  now = Date.now(),
  started: (cohort: string, lab: string) => number = () => 0,
): Map<string, { cohort: string; left: number }[]> {
  const out = new Map<string, { cohort: string; left: number }[]>();
  for (const c of cohorts)
    for (const [lab, left] of classWarm(c, now, started))
      if (left > 0) out.set(lab, [...(out.get(lab) ?? []), { cohort: c.name, left }]);
  return out;
}

/**
 * Checks a spec against the labs that exist; throws RequestError('invalid')
 * naming the field and what would be accepted.
 */
export function validateSpec(spec: CohortSpec, knownLabs: readonly string[]): void {
  if (!NAME_RE.test(spec.name))
    throw new RequestError(
      'invalid',
      `cohort name ${JSON.stringify(spec.name)}: use lower-case letters, digits and '-', at most 40, starting with a letter or digit`,
      { hint: 'e.g. containers-101 or fri-2026-12' },
    );
  if (spec.labs.length === 0)
    throw new RequestError('invalid', 'a cohort needs at least one lab', {
      hint: `labs here: ${knownLabs.join(', ')}`,
    });
  const unknown = spec.labs.filter((l) => !knownLabs.includes(l));
  if (unknown.length)
    throw new RequestError(
      'invalid',
      `no lab ${unknown.map((l) => JSON.stringify(l)).join(', ')}`,
      {
        hint: `labs here: ${knownLabs.join(', ')}`,
      },
    );
  if (new Set(spec.labs).size !== spec.labs.length)
    throw new RequestError('invalid', 'a lab is listed twice', { hint: 'name each lab once' });
  if (spec.seats !== undefined && (!Number.isInteger(spec.seats) || spec.seats < 1))
    throw new RequestError('invalid', `seats must be a whole number >= 1, got ${spec.seats}`, {
      hint: 'leave it out for no limit',
    });
  for (const [k, v] of [
    ['starts', spec.starts],
    ['ends', spec.ends],
  ] as const)
    if (v !== undefined && !Number.isFinite(v))
      throw new RequestError('invalid', `${k} is not a date`, {
        hint: 'an ISO date and time, e.g. 2026-12-07T09:00+01:00',
      });
  if (spec.starts !== undefined && spec.ends !== undefined && spec.ends <= spec.starts)
    throw new RequestError('invalid', 'the cohort ends before it starts', {
      hint: 'swap --starts and --ends?',
    });
  for (const [lab, n] of Object.entries(spec.warm ?? {})) {
    if (!spec.labs.includes(lab)) {
      const near = didYouMean(lab, spec.labs);
      throw new RequestError('invalid', `warm seats of "${lab}": not one of the class's labs`, {
        hint: near ? `did you mean "${near}"?` : `the class's labs: ${spec.labs.join(', ')}`,
      });
    }
    if (!Number.isInteger(n) || n < 1 || n > 1000)
      throw new RequestError(
        'invalid',
        `warm seats of ${lab}: ${n} is not a count from 1 to 1000`,
        {
          hint: 'leave the lab out for none',
        },
      );
    if (spec.seats !== undefined && n > spec.seats)
      throw new RequestError(
        'invalid',
        `${n} warm seats of ${lab} for a class of ${spec.seats} seat${spec.seats === 1 ? '' : 's'}`,
        {
          hint: `at most ${spec.seats}: a seat nobody can take only holds memory`,
        },
      );
  }
}

export function createCohort(
  store: Store,
  spec: CohortSpec,
  knownLabs: readonly string[],
): CreatedCohort {
  validateSpec(spec, knownLabs);
  if (store.getCohort(spec.name))
    throw new RequestError('conflict', `a cohort named ${spec.name} exists already`, {
      hint: 'pick another name, or see it with: underlay cohort show ' + spec.name,
    });
  const token = crypto.randomBytes(32).toString('base64url');
  // A code collision (27^8 ~ 2.8e11 codes) is retried, not reported.
  for (let attempt = 0; attempt < 5; attempt++) {
    const cohort: CohortRow = {
      name: spec.name,
      code: drawCode(),
      tokenHash: hashToken(token),
      labs: spec.labs,
      ...(spec.starts !== undefined ? { starts: spec.starts } : {}),
      ...(spec.ends !== undefined ? { ends: spec.ends } : {}),
      ...(spec.seats !== undefined ? { seats: spec.seats } : {}),
      ...(spec.warm && Object.keys(spec.warm).length ? { warm: spec.warm } : {}),
      closed: false,
      created: Date.now(),
    };
    if (store.addCohort(cohort)) return { cohort, token };
    if (store.getCohort(spec.name))
      throw new RequestError('conflict', `a cohort named ${spec.name} exists already`);
  }
  throw new Error('could not draw an unused join code in 5 attempts');
}

export function getCohort(store: Store, name: string): CohortRow {
  const c = store.getCohort(name);
  if (!c)
    throw new RequestError('not-found', `no cohort named ${JSON.stringify(name)}`, {
      hint: 'list them with: underlay cohort list',
    });
  return c;
}

export function closeCohort(store: Store, name: string): CohortRow {
  const c = getCohort(store, name);
  if (c.source === 'file')
    throw new RequestError(
      'conflict',
      `cohort ${name} is declared in the labs folder's cohorts.yaml`,
      {
        hint: 'set `closed: true` on it in the file (the file wins at the next sync)',
      },
    );
  if (!c.closed) store.updateCohort({ ...c, closed: true });
  return { ...c, closed: true };
}

/** Whether `token` is this cohort's instructor token (constant time). */
export function instructorAllowed(c: CohortRow, token: string): boolean {
  const a = Buffer.from(hashToken(token), 'hex');
  const b = Buffer.from(c.tokenHash, 'hex');
  return a.length === b.length && crypto.timingSafeEqual(a, b);
}

function when(ms: number): string {
  return new Date(ms).toISOString().replace(/:\d\d\.\d+Z$/, 'Z');
}

/**
 * A student joins with the code and a display name. Refusals say which
 * rule and what to do; joining again (another device, a new name) is fine
 * and takes no second seat.
 */
export function joinCohort(
  store: Store,
  typedCode: string,
  display: string,
  student: string,
  now = Date.now(),
): { cohort: CohortRow; member: MemberRow; again: boolean } {
  const code = normalizeCode(typedCode);
  const c = code ? store.cohortByCode(code) : undefined;
  if (!c)
    throw new RequestError(
      'not-found',
      `no class has the code ${JSON.stringify(typedCode.trim())}`,
      {
        hint: 'check it with your instructor: 8 letters and digits, like ACDE-FG23',
      },
    );
  const name = display.replace(/\s+/g, ' ').trim();
  if (name.length === 0 || name.length > DISPLAY_MAX || /\p{Cc}/u.test(name))
    throw new RequestError('invalid', `a display name of 1 to ${DISPLAY_MAX} characters, please`, {
      hint: 'the name your instructor will see next to your progress',
    });
  // Invisible and direction-changing characters (zero-width space, right-to-left
  // override): a name that looks exactly like a classmate's on the roster.
  if (/\p{Cf}/u.test(name))
    throw new RequestError(
      'invalid',
      'a display name with invisible or direction-changing characters',
      {
        hint: 'type your name with plain letters',
      },
    );
  const state = cohortState(c, now);
  if (state === 'closed')
    throw new RequestError('forbidden', `the class ${c.name} is closed`, {
      hint: 'ask your instructor for the code of an open class',
    });
  if (state === 'not-yet-open')
    throw new RequestError(
      'forbidden',
      `the class ${c.name} opens at ${when(c.starts as number)}`,
      {
        hint: 'come back then, with the same code',
      },
    );
  if (state === 'ended')
    throw new RequestError('forbidden', `the class ${c.name} ended at ${when(c.ends as number)}`, {
      hint: 'ask your instructor whether it runs again',
    });
  const r = store.addMember(c.name, student, name, c.seats);
  if (r === 'full')
    throw new RequestError('forbidden', `all ${c.seats} seats of the class ${c.name} are taken`, {
      hint: 'ask your instructor: they can free a seat (Remove from class) or add seats',
    });
  const member = store.members(c.name).find((m) => m.student === student) as MemberRow;
  return { cohort: c, member, again: r === 'again' };
}

/**
 * What the HTTP API is handed (cli/serve.ts builds it): joins and a
 * student's classes, over the store it was built with.
 */
/**
 * A student's opaque key in a class (the instructor API, the dashboard, the
 * exports): never the student id, which is what their cookie signs.
 */
export function memberKey(cohort: string, student: string): string {
  return crypto.createHash('sha256').update(`${cohort}\0${student}`).digest('hex').slice(0, 16);
}

export class Classroom {
  constructor(private readonly store: Store) {}

  join(
    code: string,
    display: string,
    student: string,
  ): { cohort: string; name: string; labs: string[]; again: boolean } {
    const r = joinCohort(this.store, code, display, student);
    return { cohort: r.cohort.name, name: r.member.display, labs: r.cohort.labs, again: r.again };
  }

  /**
   * The cohort and its students for its instructor. An unknown cohort and a
   * wrong token get the same answer: the route says nothing about which
   * cohorts exist to someone without a token.
   */
  forInstructor(name: string, token: string): { cohort: CohortRow; members: MemberRow[] } {
    const c = this.store.getCohort(name);
    if (!c || !token || !instructorAllowed(c, token))
      throw new RequestError('forbidden', 'this link is not the instructor link of that class', {
        hint: 'use the instructor link `underlay cohort create` printed (it holds the token after #token=)',
      });
    return { cohort: c, members: this.store.members(c.name) };
  }

  /**
   * How many of a class's students have the lab: their files for it (a lab
   * started, or a warm seat taken: its disk is theirs at once) or a live lab
   * session. What counts a class's warm seats down (classWarm).
   */
  haveLab(cohort: string, lab: string): number {
    return this.store.countMembersWithLab(cohort, lab);
  }

  /**
   * Where a cohort's checks fail most: per lab and step, its most frequent
   * failure messages (at most `perStep`), most frequent first. This is what
   * tells an instructor which step to explain again, or to rewrite.
   */
  failing(
    c: CohortRow,
    members: MemberRow[],
    /** The lab's near miss whose expected message this is (labs declare `nearMisses[].says`). */
    nearMissOf: (lab: string, step: string, message: string) => string | undefined = () =>
      undefined,
    perStep = 3,
  ): InstructorView['failing'] {
    const seen = new Map<string, number>();
    return this.store
      .failingMessages(
        members.map((m) => m.student),
        c.labs,
      )
      .filter((r) => {
        const k = `${r.lab}\0${r.step}`;
        const n = (seen.get(k) ?? 0) + 1;
        seen.set(k, n);
        return n <= perStep;
      })
      .map((r) => {
        const nearMiss = nearMissOf(r.lab, r.step, r.message);
        return nearMiss ? { ...r, nearMiss } : r;
      });
  }

  /**
   * The class's events at once, per student and lab (oldest first): what the
   * dashboard's analytics and "where is everyone" read, in one query.
   */
  classEvents(c: CohortRow, members: MemberRow[]): Map<string, LabEvent[]> {
    const by = new Map<string, LabEvent[]>();
    const said = { hint: true };
    const none = {};
    for (const e of this.store.eventSummaries(
      members.map((m) => m.student),
      c.labs,
    )) {
      const k = `${e.owner}\0${e.lab}`;
      let list = by.get(k);
      if (!list) by.set(k, (list = []));
      // What analytics reads of a detail: whether a hint said something.
      list.push({ step: e.step, kind: e.kind, detail: e.said ? said : none, at: e.at });
    }
    return by;
  }

  /** Per lab and step of the cohort: completion, median time, checks per pass, hint use. */
  analytics(
    c: CohortRow,
    members: MemberRow[],
    labs: readonly { id: string; steps: readonly string[] }[],
    events: Map<string, LabEvent[]> = this.classEvents(c, members),
  ): StepFigures[] {
    return labs
      .filter((l) => c.labs.includes(l.id))
      .flatMap((l) =>
        stepAnalytics(
          l.id,
          l.steps,
          members.map((m) => events.get(`${m.student}\0${l.id}`) ?? []),
        ),
      );
  }

  /** Records an instructor's notice to the class; the caller pushes it to live pages. */
  notice(
    c: CohortRow,
    text: string,
    now = Date.now(),
  ): { cohort: string; text: string; at: number } {
    const clean = text.replace(/\p{Cc}+/gu, ' ').trim();
    if (!clean)
      throw new RequestError('invalid', 'an empty notice', {
        hint: 'write what the class should read',
      });
    this.store.addNotice(c.name, clean, now);
    return { cohort: c.name, text: clean, at: now };
  }

  /**
   * An opaque key for a member in the instructor's API: the student id is
   * never shown (it is what the student's cookie signs), and a key from
   * one cohort means nothing in another.
   */
  memberKey(c: CohortRow, m: MemberRow): string {
    return memberKey(c.name, m.student);
  }

  /**
   * Why an instructor's open view of a student may not go on, if it may not:
   * the token is no longer the class's, the class is over, or the student
   * left it. A few primary-key reads and one hash: asked for every open
   * view every 2 s (transport/socket.ts).
   */
  stillWatchable(cohort: string, token: string, student: string): string | undefined {
    const c = this.store.getCohort(cohort);
    if (!c || !instructorAllowed(c, token))
      return 'this link is not the instructor link of that class';
    const state = cohortState(c);
    if (state === 'closed' || state === 'ended') return `the class is ${state}`;
    if (!this.store.isMember(cohort, student)) return 'the student is no longer in the class';
    return undefined;
  }

  /**
   * Takes a student out of the class: their seat is free for someone else
   * (a class whose seats were taken by made-up students gets them back).
   * Their progress stays theirs; they may join again like anyone, with the
   * code and a free seat (`underlay cohort set --new-code` changes the code).
   */
  remove(c: CohortRow, m: MemberRow): void {
    this.store.removeMember(c.name, m.student);
  }

  member(c: CohortRow, members: MemberRow[], key: string): MemberRow {
    const m = members.find((x) => this.memberKey(c, x) === key);
    if (!m)
      throw new RequestError('not-found', 'no such student in this class', {
        hint: 'reload the page: the roster may have changed',
      });
    return m;
  }

  /** A student's recorded actions in the cohort's labs, newest first (at most `limit`). */
  history(
    c: CohortRow,
    m: MemberRow,
    limit = 50,
  ): { at: number; lab: string; step: string; kind: string; message: string }[] {
    return c.labs
      .flatMap((lab) =>
        this.store.events(m.student, lab).map((e) => ({
          at: e.at,
          lab,
          step: e.step,
          kind: e.kind,
          message: String((e.detail as { message?: unknown } | null)?.message ?? ''),
        })),
      )
      .sort((a, b) => b.at - a.at)
      .slice(0, limit);
  }

  memberships(
    student: string,
    now = Date.now(),
  ): {
    cohort: string;
    name: string;
    labs: string[];
    notice?: { cohort: string; text: string; at: number };
  }[] {
    return this.store.memberOf(student).flatMap((m) => {
      const c = this.store.getCohort(m.cohort);
      if (!c) return [];
      const n = this.store.lastNotice(c.name);
      const fresh = n && now - n.at < NOTICE_SHOWN_MS ? { cohort: c.name, ...n } : undefined;
      return [
        { cohort: c.name, name: m.display, labs: c.labs, ...(fresh ? { notice: fresh } : {}) },
      ];
    });
  }

  /**
   * Which labs a student may use: the labs of the open classes they sit in;
   * with none, every lab (open mode) or, when the server runs classes only,
   * none. `labs` undefined means every lab.
   */
  scope(
    student: string,
    classesOnly: boolean,
    now = Date.now(),
  ): { cohorts: string[]; labs: Set<string> | undefined } {
    const open = this.store
      .memberOf(student)
      .flatMap((m) => this.store.getCohort(m.cohort) ?? [])
      .filter((c) => cohortState(c, now) === 'open');
    if (open.length === 0) return { cohorts: [], labs: classesOnly ? new Set() : undefined };
    return { cohorts: open.map((c) => c.name), labs: new Set(open.flatMap((c) => c.labs)) };
  }

  /** The students of a cohort (student ids: for the server's own use, never sent). */
  students(c: CohortRow): string[] {
    return this.store.members(c.name).map((m) => m.student);
  }
}

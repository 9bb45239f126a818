/**
 * The instructor API (docs/classroom.md). Every route needs the cohort's
 * instructor token (Authorization: Bearer <token>); a wrong token and an
 * unknown cohort get the same 403.
 *   GET  /api/instructor/cohorts/:name                 -> InstructorView (roster, failing, analytics)
 *   GET  /api/instructor/cohorts/:name/export?format=csv|json[&what=progress|analytics]
 *   POST /api/instructor/cohorts/:name/notice {text}   -> ClassNotice (to every student's page)
 *   GET  /api/instructor/cohorts/:name/students/:key   -> InstructorStudent
 *   POST /api/instructor/cohorts/:name/students/:key/remove           -> { removed } (the seat frees)
 *   POST /api/instructor/cohorts/:name/students/:key/labs/:lab/end    -> { ended }
 *   POST /api/instructor/cohorts/:name/students/:key/labs/:lab/reset  -> { reset, ended }
 *   POST /api/instructor/cohorts/:name/students/:key/labs/:lab/steps/:step/restart -> { restarted, step, current }
 * Watching a student's terminals is a socket (HandshakeAuth `watch`),
 * resolved by watchResolver below.
 */
import type * as http from 'node:http';
import type { Classroom } from '../classroom/cohorts';
import { classWarm, cohortState, formatCode, WARM_LEAD_MS } from '../classroom/cohorts';
import { ANALYTICS_COLUMNS, exportRows, toCsv } from '../classroom/export';
import type { LabCatalog } from '../labs/catalog';
import type { LabEngine } from '../labs/engine';
import type { LabSessions } from '../labs/lab-sessions';
import { RESTORED_CLIENT } from '../sessions/admission';
import { restartAt } from './lab-api';
import {
  NoticeRequest,
  parse,
  type ClassNotice,
  type ClassWarmSeats,
  type InstructorStudent,
  type InstructorView,
  type LabProgress,
  type WatchAuth,
} from '../protocol/index';
import type { Session } from '../sessions/session-manager';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import { readJsonBody } from './lab-api';
import { json } from './respond';

export interface InstructorContext {
  classroom: Classroom;
  catalog: LabCatalog;
  engine: LabEngine;
  labSessions: LabSessions;
  log: Logger;
  /** Pushes a notice to these live sessions' pages (the socket gateway). */
  notify: (sessions: string[], notice: ClassNotice) => void;
  /** UNDERLAY_CLASSES_ONLY: a student in no open class may use no lab. */
  classesOnly?: boolean;
  /** The warm seats of this server per lab (labs/warm-pool.ts), if it keeps any. */
  warm?: () => Record<string, { ready: number; preparing: number }>;
}

/** The class's warm seats as its instructor sees them (InstructorView.warm). */
function warmSeats(
  ctx: InstructorContext,
  cohort: Parameters<typeof classWarm>[0],
  now: number,
): ClassWarmSeats[] | undefined {
  const asked = Object.entries(cohort.warm ?? {});
  if (!asked.length) return undefined;
  const pool = ctx.warm?.() ?? {};
  const have = new Map(asked.map(([lab]) => [lab, ctx.classroom.haveLab(cohort.name, lab)]));
  const wanting = classWarm(cohort, now, (_, lab) => have.get(lab) ?? 0);
  return asked.map(([lab, n]) => ({
    lab,
    asked: n,
    have: have.get(lab) ?? 0,
    wanting: wanting.get(lab) ?? 0,
    ready: pool[lab]?.ready ?? 0,
    preparing: pool[lab]?.preparing ?? 0,
    ...(cohort.starts !== undefined ? { from: cohort.starts - WARM_LEAD_MS } : {}),
  }));
}

/** How long a computed dashboard view is served again (its `now` says when it was made). */
const VIEW_CACHE_MS = 500;
const viewCache = new Map<string, { until: number; members: number; body: string }>();

const bearer = (req: http.IncomingMessage) =>
  /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';

const STUDENT_RE =
  /^\/api\/instructor\/cohorts\/([a-z0-9-]{1,40})\/students\/([0-9a-f]{16})(?:\/labs\/([a-z0-9-]{1,63})\/(end|reset|steps\/([a-z0-9-]{1,63})\/restart)|\/(remove))?$/;
const COHORT_RE = /^\/api\/instructor\/cohorts\/([a-z0-9-]{1,40})(?:\/(export|notice))?$/;

/**
 * A class that is over (closed, or past its end) keeps its record for its
 * instructor (roster, progress, history, exports), but its students are no
 * longer in it (docs/classroom.md#when-the-class-is-over): no watching their
 * terminals, ending, resetting or moving their labs, no notices to them.
 */
function refuseIfOver(cohort: Parameters<typeof cohortState>[0], what: string): void {
  const state = cohortState(cohort);
  if (state === 'closed' || state === 'ended')
    throw new RequestError('conflict', `the class is ${state}: no ${what} any more`, {
      hint: 'its students are back on their own; the roster, the progress and the exports stay',
    });
}

/** The labs of a cohort that this server has, with their step ids in order. */
function cohortLabs(ctx: InstructorContext, labs: string[]) {
  return labs.flatMap((id) => {
    const l = ctx.catalog.labs.get(id);
    return l ? [{ id, title: l.lab.metadata.title, steps: l.lab.steps }] : [];
  });
}

/** Handles an /api/instructor/ request; false if no route matches. */
export async function instructorRoute(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  ctx: InstructorContext,
): Promise<boolean> {
  const { classroom, engine, labSessions, log } = ctx;
  res.setHeader('cache-control', 'no-store');
  const is = STUDENT_RE.exec(url.pathname);
  if (is) {
    const { cohort, members } = classroom.forInstructor(is[1] as string, bearer(req));
    const m = classroom.member(cohort, members, is[2] as string);
    if (is[6]) {
      // Out of the class: the seat frees; their labs and progress stay theirs.
      if (req.method !== 'POST') {
        json(res, 405, { error: `${req.method} is not allowed here` });
        return true;
      }
      // The record of a class that is over stays whole.
      refuseIfOver(cohort, 'removing students');
      classroom.remove(cohort, m);
      viewCache.delete(cohort.name);
      // Their sandboxes of the class's labs that they may no longer use (with
      // UNDERLAY_CLASSES_ONLY, or another class of theirs without the lab) end.
      const { labs: allowed } = classroom.scope(m.student, !!ctx.classesOnly);
      let ended = 0;
      for (const lab of cohort.labs)
        if (allowed && !allowed.has(lab))
          try {
            if (await labSessions.endInOrder(m.student, lab, 'you were removed from the class'))
              ended++;
          } catch (err) {
            // The removal stands; housekeeping parks what is left.
            log.error("ending a removed student's sandbox", { lab, error: String(err) });
          }
      log.info('instructor removed a student from the class', { cohort: cohort.name, ended });
      json(res, 200, { removed: true });
      return true;
    }
    const action = is[4];
    if (action) {
      if (req.method !== 'POST') {
        json(res, 405, { error: `${req.method} is not allowed here` });
        return true;
      }
      const lab = is[3] as string;
      refuseIfOver(cohort, "changes to a student's labs");
      if (!cohort.labs.includes(lab))
        throw new RequestError('not-found', `the class has no lab ${JSON.stringify(lab)}`);
      // The instructor sees their own action at once, not a cached view from before it.
      viewCache.delete(cohort.name);
      if (action.startsWith('steps/')) {
        // Move the student to the start of a step: a fresh sandbox with the
        // earlier steps done (the student's page reconnects to it).
        const loaded = ctx.catalog.labs.get(lab);
        const stepId = is[5] as string;
        if (!loaded) throw new RequestError('not-found', `no lab ${JSON.stringify(lab)} here`);
        // Counted as the student's own start: their address's, from their
        // live sandbox, else theirs alone (not the whole class's as one
        // address, which capped an instructor at a few dozen moves).
        // (A sandbox restored after a restart holds a 'restored' place, no address.)
        const held = labSessions.find(m.student, lab)?.slot?.client;
        const client =
          held && held !== RESTORED_CLIENT ? held : `instructor:${cohort.name}:${is[2] as string}`;
        const { progress } = await restartAt(
          { engine, labSessions, catalog: ctx.catalog },
          loaded,
          stepId,
          m.student,
          client,
        );
        // The student's page reconnects to the new sandbox and says why.
        const live = labSessions.find(m.student, lab);
        const n = loaded.lab.steps.findIndex((x) => x.id === stepId) + 1;
        if (live)
          live.notice = `Your instructor moved you to the start of step ${n}: a fresh sandbox${n > 1 ? ', with the steps before it done for you' : ''}. Files and programs from before are gone.`;
        log.info('instructor restarted a student at a step', {
          cohort: cohort.name,
          lab,
          step: stepId,
        });
        json(res, 200, { restarted: true, step: stepId, current: progress.current });
        return true;
      }
      if (action === 'end') {
        const ended = await labSessions.end(m.student, lab, 'your instructor ended this sandbox');
        log.info('instructor ended a lab session', { cohort: cohort.name, lab, ended });
        json(res, 200, { ended });
        return true;
      }
      // Reset: progress forgotten, sandbox ended, files dropped; the
      // student's next visit starts from the lab's own files, as after their own reset.
      if (!ctx.catalog.labs.has(lab))
        throw new RequestError('not-found', `no lab ${JSON.stringify(lab)} here`);
      const ended = await labSessions.endAfresh(
        m.student,
        lab,
        'your instructor reset this lab: open it again to start afresh',
        () => engine.resetLab(m.student, lab),
      );
      log.info('instructor reset a lab', { cohort: cohort.name, lab, ended });
      json(res, 200, { reset: true, ended });
      return true;
    }
    if (req.method !== 'GET') {
      json(res, 405, { error: `${req.method} is not allowed here` });
      return true;
    }
    const state = cohortState(cohort);
    const over = state === 'closed' || state === 'ended';
    const out: InstructorStudent = {
      key: is[2] as string,
      name: m.display,
      // What a former student runs now is theirs: shown only while the class is on.
      live: (over ? [] : cohort.labs).flatMap((lab) => {
        const s = labSessions.find(m.student, lab);
        if (!s) return [];
        return [
          {
            lab,
            terminals: [...s.terminals.values()].map((e) => ({
              term: e.terminal.id,
              name: e.terminal.name,
              ...(e.terminal.exited ? { exited: e.terminal.exited.code } : {}),
            })),
          },
        ];
      }),
      history: classroom.history(cohort, m),
    };
    json(res, 200, out);
    return true;
  }

  const ic = COHORT_RE.exec(url.pathname);
  if (!ic) return false;
  const { cohort, members } = classroom.forInstructor(ic[1] as string, bearer(req));
  const labs = cohortLabs(ctx, cohort.labs);
  const analytics = () =>
    classroom.analytics(
      cohort,
      members,
      labs.map((l) => ({ id: l.id, steps: l.steps.map((s) => s.id) })),
    );

  if (ic[2] === 'notice') {
    if (req.method !== 'POST') {
      json(res, 405, { error: `${req.method} is not allowed here` });
      return true;
    }
    refuseIfOver(cohort, 'notices');
    const p = parse(NoticeRequest, 'notice', await readJsonBody(req));
    if (!p.ok) throw new RequestError('invalid', p.error.message);
    const notice = classroom.notice(cohort, p.value.text);
    const live = classroom
      .students(cohort)
      .flatMap((student) => cohort.labs.flatMap((lab) => labSessions.find(student, lab)?.id ?? []));
    ctx.notify(live, notice);
    log.info('instructor notice', { cohort: cohort.name, pages: live.length });
    json(res, 200, notice);
    return true;
  }
  if (req.method !== 'GET') {
    json(res, 405, { error: `${req.method} is not allowed here` });
    return true;
  }

  if (ic[2] === 'export') {
    const format = url.searchParams.get('format') ?? 'csv';
    const what = url.searchParams.get('what') ?? 'progress';
    if (format !== 'csv' && format !== 'json')
      throw new RequestError(
        'invalid',
        `format must be csv or json, got ${JSON.stringify(format)}`,
      );
    if (what !== 'progress' && what !== 'analytics')
      throw new RequestError(
        'invalid',
        `what must be progress or analytics, got ${JSON.stringify(what)}`,
      );
    let body: string;
    if (what === 'analytics') {
      const rows = analytics();
      body = format === 'csv' ? toCsv(rows, ANALYTICS_COLUMNS) : JSON.stringify(rows, null, 2);
    } else {
      const rows = exportRows(
        cohort.name,
        members,
        labs.map((l) => ({ id: l.id, steps: l.steps.map((s) => s.id) })),
        (student, lab) => engine.state(student, lab).steps,
        (m) => classroom.memberKey(cohort, m),
      );
      body = format === 'csv' ? toCsv(rows) : JSON.stringify(rows, null, 2);
    }
    res.writeHead(200, {
      'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/json',
      'content-disposition': `attachment; filename="${cohort.name}-${what}.${format}"`,
    });
    res.end(body);
    return true;
  }

  // One read of the class (events, progress) serves the whole view; the
  // result is kept for half a second, so instructor tabs polling together
  // cost one computation (test/bench/instructor.bench.ts).
  const cached = viewCache.get(cohort.name);
  if (cached && cached.until > Date.now() && cached.members === members.length) {
    res.setHeader('content-type', 'application/json');
    res.end(cached.body);
    return true;
  }
  const events = classroom.classEvents(cohort, members);
  const states = engine.statesOf(
    members.map((m) => m.student),
    labs.map((l) => l.id),
  );
  const now = Date.now();
  const warm = warmSeats(ctx, cohort, now);
  const view: InstructorView = {
    cohort: cohort.name,
    code: formatCode(cohort.code),
    state: cohortState(cohort),
    ...(cohort.seats !== undefined ? { seats: cohort.seats } : {}),
    labs: labs.map((l) => ({
      id: l.id,
      title: l.title,
      steps: l.steps.map((st) => ({ id: st.id, title: st.title })),
    })),
    now,
    ...(warm ? { warm } : {}),
    failing: classroom.failing(cohort, members, (lab, step, message) =>
      ctx.catalog.nearMissOf(lab, step, message),
    ),
    analytics: classroom.analytics(
      cohort,
      members,
      labs.map((l) => ({ id: l.id, steps: l.steps.map((s) => s.id) })),
      events,
    ),
    students: members.map((m) => ({
      key: classroom.memberKey(cohort, m),
      name: m.display,
      joined: m.joined,
      at: Object.fromEntries(
        labs.flatMap((l) => {
          const evs = events.get(`${m.student}\0${l.id}`);
          if (!evs?.length) return [];
          const first = (evs[0] as { at: number }).at;
          const last = Math.max(...evs.map((e) => e.at));
          const steps = (states.get(`${m.student}\0${l.id}`) as LabProgress).steps;
          const order = l.steps.map((st) => st.id);
          const current = order.find((sid) => !steps[sid]?.passed && !steps[sid]?.skipped);
          const passedAts = order
            .slice(0, current ? order.indexOf(current) : order.length)
            .map((sid) => steps[sid]?.passedAt ?? 0);
          const since = Math.max(first, ...passedAts);
          return [[l.id, { ...(current ? { step: current, since } : {}), last }]];
        }),
      ),
      progress: Object.fromEntries(
        labs.map((l) => [
          l.id,
          Object.fromEntries(
            Object.entries((states.get(`${m.student}\0${l.id}`) as LabProgress).steps).map(
              ([step, p]) => [
                step,
                {
                  passed: p.passed,
                  skipped: p.skipped,
                  attempts: p.attempts,
                  hintsShown: p.hintsShown,
                },
              ],
            ),
          ),
        ]),
      ),
    })),
  };
  const body = JSON.stringify(view);
  viewCache.set(cohort.name, { until: Date.now() + VIEW_CACHE_MS, members: members.length, body });
  res.setHeader('content-type', 'application/json');
  res.end(body);
  return true;
}

/**
 * The socket gateway's `watch`: an instructor's read-only view of one
 * student's live lab session. Refusals are RequestErrors whose message the
 * client sees in its connect error.
 */
/**
 * Whether an open view (resolved by watchResolver at its handshake) may go
 * on: a reason when not. Cheap, for every open view every 2 s. Throws only
 * on a store error (the view is then kept, and asked again).
 */
export function watchRecheck(
  classroom: Classroom,
  labSessions: LabSessions,
): (w: WatchAuth, session: Session) => string | undefined {
  return (w, session) => {
    const owner = session.owner;
    if (!owner) return "the session is no student's";
    return (
      classroom.stillWatchable(w.cohort, w.token, owner) ??
      (labSessions.find(owner, w.lab) === session
        ? undefined
        : 'the student has no live sandbox in that lab')
    );
  };
}

export function watchResolver(
  classroom: Classroom,
  labSessions: LabSessions,
): (w: WatchAuth) => Session | undefined {
  return (w) => {
    const { cohort, members } = classroom.forInstructor(w.cohort, w.token);
    const m = classroom.member(cohort, members, w.student);
    refuseIfOver(cohort, "watching a student's terminals");
    if (!cohort.labs.includes(w.lab))
      throw new RequestError('not-found', `the class has no lab ${JSON.stringify(w.lab)}`);
    const s = labSessions.find(m.student, w.lab);
    if (!s) throw new RequestError('not-found', 'the student has no live sandbox in that lab');
    return s;
  };
}

/**
 * The lab API (JSON over HTTP; the student is the cookie's id):
 *   GET    /api/labs/:lab                      -> LabView (never scripts or solutions)
 *   POST   /api/labs/:lab/session              -> LabSession (start or resume the sandbox)
 *   DELETE /api/labs/:lab/session              -> end it (progress is kept)
 *   POST   /api/labs/:lab/reset                -> forget progress, fresh sandbox
 *   POST   /api/labs/:lab/steps/:step/check    {answer?} -> CheckResponse
 *   POST   /api/labs/:lab/steps/:step/hint     -> HintResponse
 *   POST   /api/labs/:lab/steps/:step/skip     -> LabProgress
 *   POST   /api/labs/:lab/steps/:step/reset    -> LabProgress
 * Errors: { error, step?, hint? } with 400 (bad body), 404 (unknown lab or
 * step), 409 (no running sandbox: start the lab first), 503 (sandbox failed).
 */
import type * as http from 'node:http';
import {
  CheckRequest,
  SkipRequest,
  parse,
  type SkipResponse,
  type ApiError,
  type CheckResponse,
  type HintResponse,
  type LabCard,
  type LabList,
  type LabProgress,
  type LabSession,
  type LabView,
} from '../protocol/index';
import type { LabCatalog } from '../labs/catalog';
import type { LabEngine } from '../labs/engine';
import type { LabSessions } from '../labs/lab-sessions';
import { effectiveStep, type LoadedLab } from '../labs/loader';
import { clipLine, notApplicable } from '../labs/runtime';
import { replaySteps, Typist } from '../labs/walkthrough';
import { SandboxError } from '../sandbox/errors';
import type { Admission } from '../sessions/admission';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import { errorResponse, json as send } from './respond';

export interface LabApiContext {
  catalog: LabCatalog;
  engine: LabEngine;
  labSessions: LabSessions;
  owner: string;
  /** The remote address (per-client limits). */
  client: string;
  /** Rate limits; absent in tests that do without. */
  admission?: Admission;
  log: Logger;
  /**
   * The labs this student may start (their classes'); undefined: every lab.
   * `cohorts` names their open classes, for the refusal's words.
   */
  scope?: { cohorts: string[]; labs: Set<string> | undefined; classesOnly: boolean };
}

/** Why a lab is outside a student's scope, in words with a hint; undefined when it is inside. */
export function outOfScope(
  labId: string,
  scope: LabApiContext['scope'],
): { error: string; hint: string } | undefined {
  if (!scope?.labs || scope.labs.has(labId)) return undefined;
  if (scope.cohorts.length === 0)
    return {
      error: 'this server runs labs for its classes only',
      hint: 'Join your class with the code your instructor gave you (the Join page), then open the lab again.',
    };
  return {
    error: `lab ${labId} is not part of your class (${scope.cohorts.join(', ')})`,
    hint: `Your class's labs are on the catalog page; ask your instructor if this one should be.`,
  };
}

const err = (res: http.ServerResponse, status: number, e: ApiError) => send(res, status, e);

function card(l: LoadedLab, catalog: LabCatalog, engine: LabEngine, owner: string): LabCard {
  const { metadata } = l.lab;
  const reason = notApplicable(l.lab, catalog.mode);
  const st = engine.state(owner, metadata.id);
  return {
    id: metadata.id,
    title: metadata.title,
    summary: metadata.summary,
    duration: metadata.duration,
    difficulty: metadata.difficulty,
    tags: metadata.tags,
    steps: l.lab.steps.length,
    available: !reason,
    ...(reason ? { reason } : {}),
    progress: {
      passed: Object.values(st.steps).filter((s) => s.passed).length,
      skipped: Object.values(st.steps).filter((s) => s.skipped && !s.passed).length,
      total: l.lab.steps.length,
    },
    ...(metadata.order !== undefined ? { order: metadata.order } : {}),
    requires: metadata.requires.flatMap((id) => {
      const r = catalog.labs.get(id);
      if (!r) return [];
      const done = Object.values(engine.state(owner, id).steps).every((s) => s.passed);
      return [{ id, title: r.lab.metadata.title, done }];
    }),
  };
}

/** In the catalog: the student's class's labs (listed or not), else every listed lab. */
function shown(l: LoadedLab, scope: LabApiContext['scope']): boolean {
  const id = l.lab.metadata.id;
  if (scope?.labs) return scope.labs.has(id);
  return l.lab.metadata.listed;
}

/** The learning path: by `order`, labs without one last, then by title. */
function pathOrder(a: LoadedLab, b: LoadedLab): number {
  const oa = a.lab.metadata.order ?? Number.MAX_SAFE_INTEGER;
  const ob = b.lab.metadata.order ?? Number.MAX_SAFE_INTEGER;
  return oa - ob || a.lab.metadata.title.localeCompare(b.lab.metadata.title);
}

export function labList(
  catalog: LabCatalog,
  engine: LabEngine,
  owner: string,
  scope?: LabApiContext['scope'],
): LabList {
  return {
    labs: [...catalog.labs.values()]
      .filter((l) => shown(l, scope))
      .sort(pathOrder)
      .map((l) => card(l, catalog, engine, owner)),
    problems: catalog.problems,
    ...(scope?.labs ? { scope: { cohorts: scope.cohorts, classesOnly: scope.classesOnly } } : {}),
  };
}

function view(l: LoadedLab, ctx: LabApiContext): LabView {
  const c = card(l, ctx.catalog, ctx.engine, ctx.owner);
  const { lab } = l;
  return {
    id: c.id,
    title: c.title,
    summary: c.summary,
    duration: c.duration,
    difficulty: c.difficulty,
    tags: c.tags,
    objectives: lab.metadata.objectives,
    terminals: lab.sandbox.terminals.map((t) => t.name),
    steps: lab.steps.map((raw) => {
      const s = effectiveStep(raw, ctx.catalog.mode);
      return {
        id: s.id,
        title: s.title,
        instructions: s.instructions ?? '',
        ...(s.predict ? { predict: s.predict } : {}),
        ...(s.check?.input ? { input: s.check.input } : {}),
        hints: s.hints.length,
        ...(s.panels.length ? { panels: s.panels } : {}),
      };
    }),
    ...(lab.outro ? { outro: lab.outro } : {}),
    available: c.available,
    ...(c.reason ? { reason: c.reason } : {}),
    progress: ctx.engine.state(ctx.owner, c.id),
    cgroup: ctx.catalog.mode,
    ...nextOnPath(l, ctx),
  };
}

/** The listed lab after this one on the learning path (in the student's scope), if any. */
function nextOnPath(l: LoadedLab, ctx: LabApiContext): { next?: { id: string; title: string } } {
  const path = [...ctx.catalog.labs.values()].filter((x) => shown(x, ctx.scope)).sort(pathOrder);
  const i = path.indexOf(l);
  const n = i >= 0 ? path[i + 1] : undefined;
  return n ? { next: { id: n.lab.metadata.id, title: n.lab.metadata.title } } : {};
}

/** A JSON request body of at most 16 KiB ({} when empty); RequestError('invalid') otherwise. */
export async function readJsonBody(req: http.IncomingMessage): Promise<unknown> {
  let n = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > 16 * 1024) throw new RequestError('invalid', 'request body over 16 KiB');
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RequestError('invalid', 'the request body is not JSON');
  }
}

/**
 * A fresh sandbox at the start of a step: the old one ends, a new one gets
 * the lab's setup, and the earlier steps' code blocks are typed into its
 * terminals as the student's Run would (each step's check after them, so the
 * values later checks read are this sandbox's PIDs and inodes, and the
 * shells are where the student's own would be: inside the namespaces the
 * text entered, with its variables set). Progress changes only when every
 * earlier step passed again. For the student's "Start step over" and an
 * instructor's "Move to step".
 */
export async function restartAt(
  ctx: Pick<LabApiContext, 'engine' | 'labSessions' | 'catalog'>,
  loaded: LoadedLab,
  stepId: string,
  owner: string,
  client: string,
): Promise<{ progress: LabProgress; session: LabSession }> {
  const { engine, labSessions } = ctx;
  const labId = loaded.lab.metadata.id;
  const index = loaded.lab.steps.findIndex((s) => s.id === stepId);
  const step = loaded.lab.steps[index];
  if (!step) throw new RequestError('not-found', `lab ${labId} has no step "${stepId}"`);
  const session = await labSessions.reset(owner, labId, client, () => {}, {
    notice:
      index === 0
        ? `A fresh sandbox, at the start of step 1 ("${step.title}"). Files and programs from before are gone.`
        : `A fresh sandbox, at the start of step ${index + 1} ("${step.title}"): the ${index === 1 ? 'step' : `${index} steps`} before it ${index === 1 ? 'was' : 'were'} done for you (their commands typed into your terminals, then the screens cleared: your shells are where those steps left them). Files and programs from before are gone.`,
  });
  const live = labSessions.find(owner, labId);
  if (!live) throw new RequestError('conflict', 'the fresh sandbox ended before it was ready');
  const typists = new Map(
    [...live.terminals.values()].map((e) => [e.terminal.name, new Typist(e.terminal)]),
  );
  let replay: Awaited<ReturnType<typeof replaySteps>>;
  try {
    replay = await replaySteps(loaded, live.sandbox, typists, ctx.catalog.mode, index);
    // A clean screen at each prompt (the notice says what was done); on a
    // failure the screens stay as they are, to show where it stopped.
    if (replay.ok) for (const t of typists.values()) await t.clear();
  } finally {
    for (const t of typists.values()) t.close();
  }
  if (!replay.ok) {
    const bad = replay.steps.at(-1);
    const title = loaded.lab.steps.find((s) => s.id === bad?.id)?.title ?? bad?.id;
    throw new SandboxError(
      `could not bring the fresh sandbox to step "${step.title}": step "${title}" did not pass when typed in: ${clipLine(bad?.detail ?? '', 300)}`,
      {
        step: 'lab-setup',
        hint: 'Your progress is unchanged and the sandbox is fresh: redo the earlier steps yourself, or Reset the lab. (Tell your instructor: the lab may need fixing.)',
      },
    );
  }
  return { progress: engine.restarted(owner, labId, stepId, replay.values), session };
}

export async function labRoute(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
  ctx: LabApiContext,
): Promise<void> {
  const m =
    /^\/api\/labs\/([a-z0-9-]{1,63})(?:\/(session|reset|steps\/([a-z0-9-]{1,63})\/(check|hint|skip|reset|restart)))?$/.exec(
      url.pathname,
    );
  if (!m) return err(res, 404, { error: `no route ${req.method} ${url.pathname}` });
  const [, labId, action, stepId, stepAction] = m as unknown as [
    string,
    string,
    string | undefined,
    string | undefined,
    string | undefined,
  ];
  const loaded = ctx.catalog.labs.get(labId);
  if (!loaded) return err(res, 404, { error: `no lab with id "${labId}"` });
  const { engine, labSessions, owner, client, admission } = ctx;
  const method = req.method ?? 'GET';
  try {
    if (!action && method === 'GET') return send(res, 200, view(loaded, ctx));
    // Reading a lab is free; what uses the host (a sandbox, a check, a hint) is for its class.
    const refused = method === 'POST' ? outOfScope(labId, ctx.scope) : undefined;
    if (refused) return err(res, 403, refused);
    if (action === 'session' && method === 'POST') {
      const started = await labSessions.start(owner, labId, client);
      engine.opened(owner, labId);
      return send(res, 200, started);
    }
    if (action === 'session' && method === 'DELETE')
      return send(res, 200, { ended: await labSessions.end(owner, labId) });
    if (action === 'reset' && method === 'POST') {
      let progress = engine.state(owner, labId);
      const session = await labSessions.reset(owner, labId, client, () => {
        progress = engine.resetLab(owner, labId);
      });
      engine.opened(owner, labId);
      return send(res, 200, { progress, session });
    }
    if (stepId && method === 'POST') {
      if (!loaded.lab.steps.some((s) => s.id === stepId))
        return err(res, 404, { error: `lab ${labId} has no step "${stepId}"` });
      // Every step action is stored (progress, events): checks, skips and
      // resets share one rate, hints have their own.
      admission?.take(stepAction === 'hint' ? 'hint' : 'check', owner);
      if (stepAction === 'skip') {
        const p = parse(SkipRequest, 'skip', await readJsonBody(req));
        if (!p.ok) return err(res, 400, { error: p.error.message });
        if (!p.value.apply) return send(res, 200, engine.skip(owner, labId, stepId));
        const s = labSessions.find(owner, labId);
        if (!s)
          return err(res, 409, {
            error: 'this lab has no running sandbox to apply the solution in',
            hint: 'Start the lab (or reload the page) first, or skip without applying.',
          });
        const { value, ...applied } = await engine.applySolution(owner, s.sandbox, labId, stepId);
        const out: SkipResponse = {
          ...engine.skip(owner, labId, stepId, applied.ok, value),
          applied,
        };
        return send(res, 200, out);
      }
      if (stepAction === 'reset') return send(res, 200, engine.resetStep(owner, labId, stepId));
      if (stepAction === 'restart') {
        const { progress, session } = await restartAt(ctx, loaded, stepId, owner, client);
        return send(res, 200, { progress, session });
      }
      const s = labSessions.find(owner, labId);
      if (!s)
        return err(res, 409, {
          error: 'this lab has no running sandbox',
          hint: 'Start the lab (or reload the page) first.',
        });
      if (stepAction === 'check') {
        const p = parse(CheckRequest, 'check', await readJsonBody(req));
        if (!p.ok) return err(res, 400, { error: p.error.message });
        const r = await engine.check(owner, s.sandbox, labId, stepId, p.value.answer);
        const out: CheckResponse = {
          passed: r.passed,
          latched: r.latched,
          message: r.message,
          progress: r.state,
        };
        return send(res, 200, out);
      }
      const h = await engine.hint(owner, s.sandbox, labId, stepId);
      const out: HintResponse = {
        ...(h.hint !== undefined ? { hint: h.hint } : {}),
        ...(h.kind ? { kind: h.kind } : {}),
        shown: h.shown,
        total: h.total,
        progress: engine.state(owner, labId),
      };
      return send(res, 200, out);
    }
    return err(res, 405, { error: `${method} is not allowed on ${url.pathname}` });
  } catch (e) {
    const { status, body: answer } = errorResponse(e);
    // A refusal (a full host, a limit) is the server working as meant: not an error.
    if (e instanceof RequestError)
      ctx.log[e.kind === 'full' ? 'debug' : 'info']('lab request refused', {
        url: url.pathname,
        status,
        error: answer.error,
      });
    else
      ctx.log.error('lab request failed', { url: url.pathname, error: answer, cause: String(e) });
    return err(res, status, answer);
  }
}

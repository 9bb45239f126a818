/**
 * One HTTP server, one port: the REST API, socket.io, and the web app.
 *   POST   /api/sessions        -> { session, token, hostname }   (a bare sandbox)
 *   DELETE /api/sessions/:id    (Authorization: Bearer <token>)   (ends it)
 *   GET    /api/labs            -> LabList (cards with this student's progress)
 *   /api/labs/:lab...           -> the lab API, see labRoutes (lab-api.ts)
 *   POST   /api/cohorts/join    -> Joined (a class, with its code; docs/classroom.md)
 *   GET    /api/me              -> Me (the classes this student sits in)
 *   /api/instructor/...         -> the instructor API (Bearer <instructor token>), instructor-api.ts
 *   GET    /healthz
 * Everything else goes to the web handler (Next.js), if any. Students are
 * anonymous: an httpOnly cookie carries a server-signed id (identity.ts).
 * Before any route: the Host must be this server's and state changes need a
 * same-origin Origin or the client header (guard.ts); bare sessions are off
 * unless the operator enables them.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { Server } from 'socket.io';
import type { Classroom } from '../classroom/cohorts';
import type { LabCatalog } from '../labs/catalog';
import type { LabEngine } from '../labs/engine';
import type { LabSessions } from '../labs/lab-sessions';
import { effectiveStep } from '../labs/loader';
import { SandboxError } from '../sandbox/errors';
import type { Admission } from '../sessions/admission';
import type { Session, SessionManager } from '../sessions/session-manager';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import { LoopDelayMonitor } from '../util/loop-delay';
import { hostAllowed, limitConnections, stateChangeRefusal } from './guard';
import { clientOf, StudentIds } from './identity';
import {
  JoinRequest,
  ResumeRequest,
  parse,
  type Joined,
  type Me,
  type ResumePreview,
} from '../protocol/index';
import { instructorRoute, watchRecheck, watchResolver } from './instructor-api';
import { labList, labRoute, readJsonBody } from './lab-api';
import { errorResponse, json } from './respond';
import { attachGateway, type GatewayOptions } from './socket';

export type WebHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
) => void | Promise<void>;

/** The lab services; serve wires them, terminal-only tests do without. */
export interface LabServices {
  catalog: LabCatalog;
  engine: LabEngine;
  sessions: LabSessions;
}

/** Everything the transport serves, built by the composition root (cli/serve.ts). */
export interface AppOptions extends GatewayOptions {
  sessions: SessionManager;
  log: Logger;
  web?: WebHandler;
  labs?: LabServices;
  /** Admission control (serve builds it from the host); absent: every start is admitted. */
  admission?: Admission;
  /** Warm seats per lab (labs/warm-pool.ts), for /healthz. */
  warm?: () => Record<string, { wanted: number; ready: number; preparing: number }>;
  /** Student ids (serve signs them with a stored secret); default: a per-process secret. */
  students?: StudentIds;
  /** Classes (cohorts): joins with a code; absent, the routes answer 404. */
  classroom?: Classroom;
  /** Offer POST /api/sessions (bare sandboxes, no lab). Off unless UNDERLAY_BARE_SESSIONS=1. */
  bareSessions?: boolean;
  /** Labs only for students in an open class (UNDERLAY_CLASSES_ONLY=1); default: open mode. */
  classesOnly?: boolean;
  /** TCP connection caps (guard.ts limitConnections). */
  connections?: { perClient: number; total: number };
}

export interface App {
  server: http.Server;
  io: Server;
  sessions: SessionManager;
  close(): Promise<void>;
  /** Stops serving but keeps lab sandboxes for the next start to re-adopt. */
  shutdown(): Promise<void>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Slow or silent clients: headers within 10 s, a whole request within 30 s. */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;

export function createApp(opts: AppOptions): App {
  const { log, sessions, labs, admission } = opts;
  const students =
    opts.students ?? new StudentIds(crypto.randomBytes(32).toString('hex'), { admission });
  const loopDelay = new LoopDelayMonitor();
  const server = http.createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      // How often those are enforced (default 30 s, three times the headers timeout).
      connectionsCheckingInterval: 2_000,
    },
    (req, res) => {
      void route(req, res).catch((err) => {
        // A refusal, or a sandbox that failed (503 with its step and hint,
        // e.g. an instructor's Move to step whose earlier steps did not pass).
        if (err instanceof RequestError || err instanceof SandboxError) {
          if (err instanceof SandboxError)
            log.warn('request failed in a sandbox', { url: req.url, error: err.toJSON() });
          const { status, body } = errorResponse(err);
          if (!res.headersSent) json(res, status, body);
          return;
        }
        log.error('request failed', { url: req.url, error: String(err) });
        if (!res.headersSent) json(res, 500, { error: 'internal error' });
      });
    },
  );
  if (opts.connections) limitConnections(server, opts.connections);

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://x');
    } catch {
      // e.g. `GET http://[ HTTP/1.1`: node parses the line, URL does not.
      return json(res, 400, { error: 'the request target is not a URL path' });
    }
    if (!hostAllowed(req, opts)) {
      log.warn('request refused: host', { host: req.headers.host });
      return json(res, 421, {
        error: `this server does not answer to the host name ${JSON.stringify(req.headers.host ?? '')}`,
        hint: "If that is this server's name, start it with UNDERLAY_ALLOWED_HOSTS=<name> (it guards against DNS rebinding).",
      });
    }
    if (url.pathname === '/healthz')
      return json(res, 200, {
        ok: true,
        sessions: sessions.list().length,
        loopDelayMs: loopDelay.stats(),
        ...(admission ? { capacity: admission.limits.capacity, waiting: admission.waiting } : {}),
        ...(opts.warm ? { warm: opts.warm() } : {}),
      });
    if (url.pathname.startsWith('/api/') && !SAFE_METHODS.has(req.method ?? 'GET')) {
      const refusal = stateChangeRefusal(req, opts.allowedOrigins);
      if (refusal) return json(res, 403, { error: refusal });
    }
    const scopeOf = (owner: string) =>
      opts.classroom
        ? { ...opts.classroom.scope(owner, !!opts.classesOnly), classesOnly: !!opts.classesOnly }
        : undefined;
    if (url.pathname === '/api/labs' && req.method === 'GET') {
      if (!labs) return json(res, 200, { labs: [], problems: [] });
      const owner = students.get(req, res);
      return json(res, 200, labList(labs.catalog, labs.engine, owner, scopeOf(owner)));
    }
    if (url.pathname.startsWith('/api/labs/') && labs) {
      const owner = students.get(req, res);
      const scope = scopeOf(owner);
      return labRoute(req, res, url, {
        catalog: labs.catalog,
        engine: labs.engine,
        labSessions: labs.sessions,
        owner,
        client: clientOf(req),
        log,
        ...(admission ? { admission } : {}),
        ...(scope ? { scope } : {}),
      });
    }
    if (url.pathname === '/api/cohorts/join' && req.method === 'POST') {
      if (!opts.classroom)
        return json(res, 404, { error: 'classes are not enabled on this server' });
      const client = clientOf(req);
      admission?.take('join', client);
      const p = parse(JoinRequest, 'join', await readJsonBody(req));
      if (!p.ok) return json(res, 400, { error: p.error.message });
      const student = students.get(req, res);
      const r: Joined = {
        ...opts.classroom.join(p.value.code, p.value.name, student),
        resume: students.resumeKey(student),
      };
      log.info('joined a class', { cohort: r.cohort, again: r.again, client });
      return json(res, 200, r);
    }
    if (url.pathname.startsWith('/api/instructor/')) {
      if (!opts.classroom || !labs)
        return json(res, 404, { error: 'classes are not enabled on this server' });
      const handled = await instructorRoute(req, res, url, {
        classroom: opts.classroom,
        catalog: labs.catalog,
        engine: labs.engine,
        labSessions: labs.sessions,
        log,
        notify: (ids, notice) => {
          for (const id of ids) io.to(`s:${id}`).emit('class:notice', notice);
        },
        ...(opts.warm ? { warm: opts.warm } : {}),
        classesOnly: !!opts.classesOnly,
      });
      if (handled) return;
    }
    if (url.pathname === '/api/me' && req.method === 'GET') {
      const student = students.get(req, res);
      const cohorts = opts.classroom?.memberships(student) ?? [];
      const me: Me = {
        cohorts,
        ...(cohorts.length ? { resume: students.resumeKey(student) } : {}),
      };
      res.setHeader('cache-control', 'no-store');
      return json(res, 200, me);
    }
    if (url.pathname === '/api/me/resume' && req.method === 'POST') {
      // Guessing keys is as hopeless as guessing cookies; the rate is the joins'.
      admission?.take('join', clientOf(req));
      const p = parse(ResumeRequest, 'resume', await readJsonBody(req));
      if (!p.ok) return json(res, 400, { error: p.error.message });
      // A link opened is not consent: the page first shows whose it is (and
      // who this browser would stop being), and switches only when asked.
      // Without that, a classmate's link silently made a browser theirs.
      if (p.value.preview) {
        const owner = students.resumeOwner(p.value.key);
        const now = students.verify(req.headers.cookie);
        const mine = now && now !== owner ? (opts.classroom?.memberships(now) ?? []) : [];
        const preview: ResumePreview = {
          cohorts: opts.classroom?.memberships(owner) ?? [],
          ...(mine.length ? { current: { cohorts: mine } } : {}),
        };
        return json(res, 200, preview);
      }
      const student = students.resume(p.value.key, res);
      const cohorts = opts.classroom?.memberships(student) ?? [];
      log.info('a student resumed in another browser', { client: clientOf(req) });
      const me: Me = {
        cohorts,
        ...(cohorts.length ? { resume: students.resumeKey(student) } : {}),
      };
      return json(res, 200, me);
    }
    if (url.pathname === '/api/sessions' && req.method === 'POST') {
      if (!opts.bareSessions)
        return json(res, 404, {
          error: 'bare sessions are off on this server',
          hint: 'Open a lab instead, or start the server with UNDERLAY_BARE_SESSIONS=1.',
        });
      try {
        const client = clientOf(req);
        const slot = admission?.admit(client, client);
        try {
          admission?.take('start', client);
          admission?.take('client-start', client);
        } catch (err) {
          slot?.release();
          throw err;
        }
        return json(
          res,
          201,
          await sessions.startGate.run(() => sessions.create(slot ? { slot } : {})),
        );
      } catch (err) {
        const { status, body } = errorResponse(err);
        log.error('session create failed', {
          error: body,
          cause: err instanceof SandboxError ? err.toJSON() : String(err),
        });
        return json(res, status, body);
      }
    }
    const m = /^\/api\/sessions\/([A-Za-z0-9_-]{1,64})$/.exec(url.pathname);
    if (m && req.method === 'DELETE') {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const s = sessions.authenticate(m[1] as string, token);
      if (!s) return json(res, 404, { error: 'no such session' });
      await sessions.end(s.id);
      return json(res, 200, { ended: s.id });
    }
    if (url.pathname.startsWith('/api/'))
      return json(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    if (opts.web) {
      // A page (not an asset): the student cookie comes with it (identity.ts ensure).
      if (
        req.method === 'GET' &&
        !url.pathname.startsWith('/_next/') &&
        !/\.\w+$/.test(url.pathname)
      )
        students.ensure(req, res);
      return void (await opts.web(req, res));
    }
    json(res, 404, { error: 'not found' });
  }

  const io = attachGateway(server, sessions, log, {
    ...opts,
    ...(opts.classroom && labs
      ? {
          watch: watchResolver(opts.classroom, labs.sessions),
          watchStill: watchRecheck(opts.classroom, labs.sessions),
        }
      : {}),
    ...(labs
      ? {
          panels: (session: Session, step: string) => {
            const l = session.lab ? labs.catalog.labs.get(session.lab) : undefined;
            const raw = l?.lab.steps.find((x) => x.id === step);
            return raw ? effectiveStep(raw, labs.catalog.mode).panels : undefined;
          },
        }
      : {}),
  });
  return {
    server,
    io,
    sessions,
    async close() {
      loopDelay.stop();
      io.close();
      await sessions.endAll();
      await new Promise<void>((r) => server.close(() => r()));
    },
    async shutdown() {
      loopDelay.stop();
      io.close();
      sessions.detachAll();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

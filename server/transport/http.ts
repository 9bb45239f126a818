/**
 * One HTTP server, one port: the REST API, socket.io, and the web app.
 *   POST   /api/sessions        -> { session, token, hostname }   (a bare sandbox)
 *   DELETE /api/sessions/:id    (Authorization: Bearer <token>)   (ends it)
 *   GET    /api/labs            -> LabList (cards with this student's progress)
 *   /api/labs/:lab...           -> the lab API, see labRoutes (lab-api.ts)
 *   GET    /healthz
 * Everything else goes to the web handler (Next.js), if any. Students are
 * anonymous: an httpOnly cookie carries a random id, minted on first visit.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import type { Server } from 'socket.io';
import type { LabCatalog } from '../labs/catalog';
import type { LabEngine } from '../labs/engine';
import type { LabSessions } from '../labs/lab-sessions';
import { SandboxError } from '../sandbox/errors';
import type { SessionManager } from '../sessions/session-manager';
import type { Logger } from '../util/logger';
import { labList, labRoute } from './lab-api';
import { errorResponse, json } from './respond';
import { attachGateway, originAllowed, type GatewayOptions } from './socket';

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
}

export interface App {
  server: http.Server;
  io: Server;
  sessions: SessionManager;
  close(): Promise<void>;
  /** Stops serving but keeps lab sandboxes for the next start to re-adopt. */
  shutdown(): Promise<void>;
}

const STUDENT_COOKIE = 'underlay_student';

/** The student id from the cookie; mints one (and sets the cookie) if there is none. */
export function student(req: http.IncomingMessage, res: http.ServerResponse): string {
  const m = new RegExp(`(?:^|;\\s*)${STUDENT_COOKIE}=([A-Za-z0-9_-]{22,64})`).exec(
    req.headers.cookie ?? '',
  );
  if (m) return m[1] as string;
  const id = crypto.randomBytes(18).toString('base64url');
  res.setHeader(
    'set-cookie',
    `${STUDENT_COOKIE}=${id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000`,
  );
  return id;
}

export function createApp(opts: AppOptions): App {
  const { log, sessions, labs } = opts;
  const server = http.createServer((req, res) => {
    void route(req, res).catch((err) => {
      log.error('request failed', { url: req.url, error: String(err) });
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
    });
  });

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/healthz')
      return json(res, 200, { ok: true, sessions: sessions.list().length });
    if (url.pathname === '/api/labs' && req.method === 'GET') {
      if (!labs) return json(res, 200, { labs: [], problems: [] });
      return json(res, 200, labList(labs.catalog, labs.engine, student(req, res)));
    }
    if (url.pathname.startsWith('/api/labs/') && labs) {
      if (req.method !== 'GET' && !originAllowed(req, opts.allowedOrigins))
        return json(res, 403, { error: 'origin not allowed' });
      return labRoute(req, res, url, {
        catalog: labs.catalog,
        engine: labs.engine,
        labSessions: labs.sessions,
        owner: student(req, res),
        log,
      });
    }
    if (url.pathname === '/api/sessions' && req.method === 'POST') {
      if (!originAllowed(req, opts.allowedOrigins))
        return json(res, 403, { error: 'origin not allowed' });
      try {
        return json(res, 201, await sessions.create());
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
    if (opts.web) return void (await opts.web(req, res));
    json(res, 404, { error: 'not found' });
  }

  const io = attachGateway(server, sessions, log, opts);
  return {
    server,
    io,
    sessions,
    async close() {
      io.close();
      await sessions.endAll();
      await new Promise<void>((r) => server.close(() => r()));
    },
    async shutdown() {
      io.close();
      sessions.detachAll();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * One HTTP server, one port: the REST API, socket.io, and the web app.
 *   POST   /api/sessions        -> { session, token, hostname }   (starts a sandbox)
 *   DELETE /api/sessions/:id    (Authorization: Bearer <token>)   (ends it)
 *   GET    /api/labs            -> { labs: [...], problems: ["file:line:col: ..."] }
 *   GET    /healthz
 * Everything else goes to the web handler (Next.js), if any.
 */
import * as http from 'node:http';
import type { Server } from 'socket.io';
import { SandboxError } from '../sandbox/errors';
import type { LabCatalog } from '../labs/catalog';
import type { SandboxManager } from '../sandbox/sandbox';
import { SessionManager, type SessionOptions } from '../sessions/session-manager';
import type { Logger } from '../util/logger';
import { attachGateway, originAllowed, type GatewayOptions } from './socket';

export type WebHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
) => void | Promise<void>;

export interface AppOptions extends GatewayOptions, SessionOptions {
  sandboxes: SandboxManager;
  log: Logger;
  web?: WebHandler;
  labs?: LabCatalog;
}

export interface App {
  server: http.Server;
  io: Server;
  sessions: SessionManager;
  close(): Promise<void>;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

export function createApp(opts: AppOptions): App {
  const { log } = opts;
  const sessions = new SessionManager(opts.sandboxes, log, opts);
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
      return json(res, 200, opts.labs ? opts.labs.summary() : { labs: [], problems: [] });
    }
    if (url.pathname === '/api/sessions' && req.method === 'POST') {
      if (!originAllowed(req, opts.allowedOrigins))
        return json(res, 403, { error: 'origin not allowed' });
      try {
        return json(res, 201, await sessions.create());
      } catch (err) {
        const e = err instanceof SandboxError ? err : SandboxError.wrap('start a sandbox', err);
        log.error('session create failed', { error: e.toJSON() });
        return json(res, 503, { error: e.message, step: e.step, hint: e.hint });
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
  };
}

/**
 * The web app (Next.js) in a process of its own, behind the server's one port.
 *
 * `underlay serve` forks for every terminal, check and sandbox step, and a
 * fork copies the parent's page tables: with Next.js loaded the server was
 * ~120-160 MiB and each spawn blocked the event loop several ms longer than
 * from a small process (docs/benchmarks.md "The web app in its own
 * process"). Page rendering also ran on the loop that relays keystrokes. So
 * the server starts web-child.ts once, while it is still small, and proxies
 * page and asset requests to it over a unix socket in its private state dir;
 * the API and socket.io stay in the server.
 *
 * If the web process dies it is started again (after 1 s, then up to 30 s);
 * meanwhile pages answer 503 with a line saying so. It ends with the server.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from '../util/logger';

/** Set by the server only (stripped from what clients send): render the 404 page. */
export const NOT_FOUND_HEADER = 'x-underlay-not-found';

/** Hop-by-hop headers: about one connection, not the message (RFC 9110 7.6.1). */
const HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'];

export interface WebProcessOptions {
  /** The web/ folder (with .next/ built, unless dev). */
  dir: string;
  /** A private directory for the socket (the server's state dir: 0700). */
  runDir: string;
  dev: boolean;
  host: string;
  port: number;
  log: Logger;
}

export class WebProcess {
  readonly socketPath: string;
  private child: ChildProcess | undefined;
  private ready = false;
  private stopped = false;
  private restarts = 0;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  constructor(private readonly opts: WebProcessOptions) {
    this.socketPath = path.join(opts.runDir, 'web.sock');
  }

  /** Starts the web process and resolves once it listens (rejects if it dies first). */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = path.join(__dirname, 'web-child.js');
      const child = fork(
        entry,
        [
          this.opts.dir,
          this.socketPath,
          this.opts.dev ? 'dev' : 'prod',
          this.opts.host,
          String(this.opts.port),
        ],
        { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: process.env },
      );
      this.child = child;
      child.on('message', (m: { ready?: boolean }) => {
        if (!m?.ready) return;
        this.ready = true;
        this.restarts = 0;
        this.opts.log.info('web app ready', { pid: child.pid });
        resolve();
      });
      child.on('exit', (code, signal) => {
        const wasReady = this.ready;
        this.ready = false;
        if (this.child === child) this.child = undefined;
        if (this.stopped) return;
        if (!wasReady) {
          reject(new Error(`the web app's process ended before it listened (${signal ?? code})`));
          return;
        }
        const delay = Math.min(30_000, 1000 * 2 ** this.restarts++);
        this.opts.log.error('the web app process ended: starting it again', {
          code,
          signal,
          inMs: delay,
        });
        setTimeout(() => {
          if (!this.stopped)
            this.start().catch((err: unknown) =>
              this.opts.log.error('web app restart failed', { error: String(err) }),
            );
        }, delay).unref();
      });
    });
  }

  /** Proxies a page or asset request; `notFound` renders the app's 404 page instead. */
  handle = (req: http.IncomingMessage, res: http.ServerResponse, notFound = false): void => {
    if (!this.ready) {
      res.statusCode = 503;
      res.setHeader('content-type', 'text/plain; charset=utf-8');
      res.setHeader('retry-after', '2');
      res.end('The web app is starting again after a failure; reload in a few seconds.\n');
      return;
    }
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    delete headers[NOT_FOUND_HEADER];
    for (const h of HOP) delete headers[h];
    if (notFound) headers[NOT_FOUND_HEADER] = '1';
    // A GET or HEAD carries no body, so it can be sent again: when a kept-alive
    // socket to the web process was closed by it just as we reused it
    // (EPIPE / ECONNRESET on a reused socket), the page's request is retried
    // once on a new socket instead of failing (a page whose script chunk got a
    // 502 never starts).
    const idempotent = req.method === 'GET' || req.method === 'HEAD';
    let up: http.ClientRequest;
    const send = (retry: boolean): void => {
      up = http.request(
        {
          socketPath: this.socketPath,
          agent: this.agent,
          method: req.method,
          path: req.url,
          headers,
        },
        (pres) => {
          const out: http.OutgoingHttpHeaders = {};
          for (const [k, v] of Object.entries(pres.headers)) if (!HOP.includes(k)) out[k] = v;
          // The server may have set the student cookie before the page (identity.ts).
          const mine = res.getHeader('set-cookie');
          if (mine !== undefined && out['set-cookie'] !== undefined)
            out['set-cookie'] = [mine, out['set-cookie']].flat().map(String);
          res.writeHead(pres.statusCode ?? 502, out);
          pres.pipe(res);
          pres.on('error', () => res.destroy());
        },
      );
      const sent = up;
      sent.on('error', (err: NodeJS.ErrnoException) => {
        if (res.headersSent) return void res.destroy();
        if (res.destroyed) return; // the client went away: nothing to answer
        if (retry && sent.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE'))
          return send(false);
        this.opts.log.warn('web app request failed', { url: req.url, error: String(err) });
        res.statusCode = 502;
        res.setHeader('content-type', 'text/plain; charset=utf-8');
        res.end('The web app did not answer; reload in a few seconds.\n');
      });
      if (idempotent) sent.end();
      else req.pipe(sent);
    };
    send(idempotent);
    // A client that goes away mid-response: stop the render too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
  };

  /** Forwards a websocket upgrade (next dev's hot reload) to the web process. */
  upgrade = (req: http.IncomingMessage, socket: net.Socket, head: Buffer): void => {
    const up = http.request({
      socketPath: this.socketPath,
      method: req.method,
      path: req.url,
      headers: req.headers,
    });
    up.on('upgrade', (pres, upSocket, upHead) => {
      const lines = [`HTTP/1.1 101 Switching Protocols`];
      for (let i = 0; i < pres.rawHeaders.length; i += 2)
        lines.push(`${pres.rawHeaders[i]}: ${pres.rawHeaders[i + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.pipe(socket).pipe(upSocket);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
    });
    up.on('response', () => socket.destroy());
    up.on('error', () => socket.destroy());
    up.end();
  };

  /** Pid of the web process, for tests and benchmarks. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  stop(): void {
    this.stopped = true;
    this.agent.destroy();
    this.child?.kill('SIGTERM');
    fs.rmSync(this.socketPath, { force: true });
  }
}

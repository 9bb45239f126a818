/**
 * `underlay serve`: one process, one port - the web app (Next.js), the REST
 * API and socket.io. This is the composition root: it builds every service
 * (store, sandboxes, sessions, labs) and hands them to transport/. On start
 * it re-adopts or reaps what a previous run left.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import next from 'next';
import { loadConfig } from '../config';
import { LabCatalog } from '../labs/catalog';
import { LabEngine } from '../labs/engine';
import { LabSessions } from '../labs/lab-sessions';
import { detectCgroupMode, SandboxManager } from '../sandbox/index';
import { SessionManager } from '../sessions/session-manager';
import { Store } from '../store/store';
import { createApp } from '../transport/http';
import { createLogger } from '../util/logger';

export interface ServeOptions {
  port: number;
  host: string;
  dev: boolean;
}

export const WEB_DIR = path.resolve(__dirname, '..', '..', '..', 'web');

export async function serve(opts: ServeOptions): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel ?? 'info');
  const store = new Store(config.stateDir);
  const sandboxes = new SandboxManager({ config, store, logger: log });
  const { adopted, reaped, quarantined } = await sandboxes.adoptOrReap();
  log.info('sandboxes from a previous run', { adopted, reaped, quarantined });
  // Housekeeping: quarantined teardowns are retried (a stuck one never stops
  // serving), and zombies re-parented to us are reaped if a path missed one.
  const housekeeping = setInterval(() => {
    sandboxes.collectZombies();
    sandboxes
      .retryQuarantined()
      .catch((err) => log.error('retry of quarantined sandboxes', { error: String(err) }));
  }, 30_000);
  housekeeping.unref();

  // --dev reloads labs; the web app's own dev mode (next dev) is separate.
  if (!config.nextDev && !fs.existsSync(path.join(WEB_DIR, '.next', 'BUILD_ID'))) {
    throw new Error('the web app is not built: run `npm run build` (or scripts/up)');
  }
  const web = next({ dev: config.nextDev, dir: WEB_DIR, hostname: opts.host, port: opts.port });
  await web.prepare();
  const handle = web.getRequestHandler();

  const mode = detectCgroupMode();
  const catalog = new LabCatalog(config.labsDir, mode, log);
  if (opts.dev) catalog.watch();
  const engine = new LabEngine(store, () => catalog.labs, mode);
  const sessions = new SessionManager(sandboxes, log, {
    // A lab session's row goes with its sandbox; progress stays.
    onEnded: (s) => {
      if (s.lab) store.deleteLabSession(s.id);
    },
  });
  const labSessions = new LabSessions(sessions, sandboxes, store, catalog, log);
  const app = createApp({
    sessions,
    log,
    web: (req, res) => {
      // An unknown lab gets a real 404 (status and page), not a 200 that says "not found".
      const m = /^\/labs\/([^/?#]+)\/?(?:[?#]|$)/.exec(req.url ?? '');
      if (m && !catalog.labs.has(decodeURIComponent(m[1] as string))) {
        res.statusCode = 404;
        return web.render404(req, res);
      }
      return handle(req, res);
    },
    labs: { catalog, engine, sessions: labSessions },
    allowedOrigins: config.allowedOrigins,
  });
  // Students' sandboxes from before a restart come back as their sessions; the rest is destroyed.
  await labSessions.restore(adopted);
  await new Promise<void>((resolve) => app.server.listen(opts.port, opts.host, resolve));
  log.info('listening', {
    url: `http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${opts.port}/`,
    dev: opts.dev,
  });
  // Stopping keeps students' sandboxes for the next start to re-adopt
  // (UNDERLAY_END_ON_STOP=1 ends them instead).
  const stop = async () => {
    catalog.close();
    if (config.endOnStop) {
      log.info('stopping: ending sessions');
      await app.close();
    } else {
      log.info('stopping: sandboxes are kept for the next start');
      await app.shutdown();
    }
    store.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

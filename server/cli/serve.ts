/**
 * `underlay serve`: one process, one port - the web app (Next.js), the REST
 * API and socket.io. On start it re-adopts or reaps what a previous run left.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import next from 'next';
import { loadConfig } from '../config';
import { LabCatalog } from '../labs/catalog';
import { LabEngine } from '../labs/engine';
import { detectCgroupMode } from '../sandbox/cgroups';
import { LabSessions } from '../sessions/lab-sessions';
import { SandboxManager } from '../sandbox/sandbox';
import { Store } from '../store/store';
import { createApp } from '../transport/http';
import { createLogger } from '../util/logger';

export interface ServeOptions {
  port: number;
  host: string;
  dev: boolean;
}

export const WEB_DIR = path.resolve(__dirname, '..', '..', '..', 'web');
export const LABS_DIR = path.resolve(
  process.env.UNDERLAY_LABS_DIR ?? path.join(__dirname, '..', '..', '..', 'labs'),
);

export async function serve(opts: ServeOptions): Promise<void> {
  const log = createLogger((process.env.UNDERLAY_LOG as 'info') || 'info');
  const config = loadConfig();
  const store = new Store(config.stateDir);
  const sandboxes = new SandboxManager({ config, store, logger: log });
  const { adopted, reaped } = await sandboxes.adoptOrReap();
  log.info('sandboxes from a previous run', { adopted, reaped });

  // --dev reloads labs; the web app's own dev mode (next dev) is separate.
  const nextDev = process.env.UNDERLAY_NEXT_DEV === '1';
  if (!nextDev && !fs.existsSync(path.join(WEB_DIR, '.next', 'BUILD_ID'))) {
    throw new Error('the web app is not built: run `npm run build` (or scripts/up)');
  }
  const web = next({ dev: nextDev, dir: WEB_DIR, hostname: opts.host, port: opts.port });
  await web.prepare();
  const handle = web.getRequestHandler();
  const labs = new LabCatalog(LABS_DIR, log);
  if (opts.dev) labs.watch();
  const mode = detectCgroupMode();
  const engine = new LabEngine(store, () => labs.labs, mode);
  const app = createApp({
    sandboxes,
    log,
    web: (req, res) => {
      // An unknown lab gets a real 404 (status and page), not a 200 that says "not found".
      const m = /^\/labs\/([^/?#]+)\/?(?:[?#]|$)/.exec(req.url ?? '');
      if (m && !labs.labs.has(decodeURIComponent(m[1] as string))) {
        res.statusCode = 404;
        return web.render404(req, res);
      }
      return handle(req, res);
    },
    labs,
    engine,
    mode,
    labSessions: (sessions) => new LabSessions(sessions, sandboxes, store, labs, mode, log),
    allowedOrigins: (process.env.UNDERLAY_ALLOWED_ORIGINS ?? '').split(',').filter(Boolean),
  });
  // Students' sandboxes from before a restart come back as their sessions; the rest is destroyed.
  await app.labSessions?.restore(adopted);
  await new Promise<void>((resolve) => app.server.listen(opts.port, opts.host, resolve));
  log.info('listening', {
    url: `http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${opts.port}/`,
    dev: opts.dev,
  });
  // Stopping keeps students' sandboxes for the next start to re-adopt
  // (UNDERLAY_END_ON_STOP=1 ends them instead).
  const stop = async () => {
    labs.close();
    if (process.env.UNDERLAY_END_ON_STOP === '1') {
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

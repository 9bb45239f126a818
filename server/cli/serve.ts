/**
 * `underlay serve`: one process, one port - the web app (Next.js), the REST
 * API and socket.io. On start it re-adopts or reaps what a previous run left.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import next from 'next';
import { loadConfig } from '../config';
import { LabCatalog } from '../labs/catalog';
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
  // Terminals and tokens live in memory until sessions are persisted (issue #6):
  // adopted sandboxes have no session to attach to, so they are reaped too.
  for (const id of adopted) await sandboxes.destroy(id);

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
  const app = createApp({
    sandboxes,
    log,
    web: (req, res) => handle(req, res),
    labs,
    allowedOrigins: (process.env.UNDERLAY_ALLOWED_ORIGINS ?? '').split(',').filter(Boolean),
  });
  await new Promise<void>((resolve) => app.server.listen(opts.port, opts.host, resolve));
  log.info('listening', {
    url: `http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${opts.port}/`,
    dev: opts.dev,
  });
  const stop = async () => {
    log.info('stopping: ending sessions');
    labs.close();
    await app.close();
    store.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

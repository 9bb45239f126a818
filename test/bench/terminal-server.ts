/**
 * The terminal gateway without the web app, for bench:terminal: prints
 * "READY <port>" once listening. Uses its own state dir and uid base.
 */
import { loadConfig } from '../../server/config';
import { SandboxManager } from '../../server/sandbox/index';
import { SessionManager } from '../../server/sessions/session-manager';
import { Store } from '../../server/store/store';
import { createApp } from '../../server/transport/http';
import { createLogger } from '../../server/util/logger';

async function main(): Promise<void> {
  const config = loadConfig({
    ...process.env,
    UNDERLAY_STATE_DIR: '/var/lib/underlay-bench',
    UNDERLAY_IMAGES_DIR: process.env.UNDERLAY_IMAGES_DIR ?? '/var/lib/underlay/images',
    UNDERLAY_UID_BASE: String(100000 + 65536 * 3000),
  });
  const log = createLogger('error');
  const sandboxes = new SandboxManager({ config, store: new Store(config.stateDir), logger: log });
  await sandboxes.reap({ all: true });
  const app = createApp({ sessions: new SessionManager(sandboxes, log), log, bareSessions: true });
  app.server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
    const addr = app.server.address();
    process.stdout.write(`READY ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
  });
  process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
}
void main();

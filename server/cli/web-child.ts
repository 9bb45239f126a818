/**
 * The web app's own process (started by web-process.ts, never by hand): Next.js
 * rendering pages on a unix socket that only `underlay serve` reaches.
 *
 * Why a process of its own: the server forks for every terminal, check and
 * sandbox step, and a fork copies the parent's page tables, so its cost grows
 * with the parent's memory; Next.js is most of that memory. Server-side
 * rendering also ran on the event loop that relays every student's keystrokes.
 *
 * argv: the web/ folder, the socket path, "dev" or "prod", the public host and
 * port (Next uses them in dev for its own URLs). Ends when the server does (the
 * IPC channel closes).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import next from 'next';
import { NOT_FOUND_HEADER } from './web-process';

async function main(): Promise<void> {
  const [dir, socketPath, mode, hostname, port] = process.argv.slice(2);
  if (!dir || !socketPath || !process.send) {
    process.stderr.write('web-child: started by underlay serve only\n');
    process.exit(2);
  }
  const app = next({ dev: mode === 'dev', dir, hostname, port: Number(port) });
  await app.prepare();
  const handle = app.getRequestHandler();
  const server = http.createServer((req, res) => {
    if (req.headers[NOT_FOUND_HEADER]) {
      res.statusCode = 404;
      return void app.render404(req, res);
    }
    return void handle(req, res);
  });
  // next dev's hot reload is a websocket the server forwards here.
  const upgrade = (app as unknown as { getUpgradeHandler?: () => http.Server['emit'] })
    .getUpgradeHandler;
  if (mode === 'dev' && typeof upgrade === 'function') {
    const h = upgrade.call(app) as unknown as (...a: unknown[]) => void;
    server.on('upgrade', (req, socket, head) => h(req, socket, head));
  }
  fs.rmSync(socketPath, { force: true });
  server.listen(socketPath, () => {
    fs.chmodSync(socketPath, 0o600);
    process.send?.({ ready: true });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`web-child: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});

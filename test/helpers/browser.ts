/**
 * Browser tests: `underlay serve` on a free port and Debian's chromium
 * driven by playwright-core. Screenshots go to test/artifacts/.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ARTIFACTS, CLI, sleep, testEnv } from './env';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export { ARTIFACTS };

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

export interface Server {
  url: string;
  port: number;
  proc: ChildProcess;
  log(): string;
  stop(): Promise<void>;
}

/** Starts `underlay serve` and waits for /healthz. */
export async function startServer(
  port?: number,
  env: Record<string, string> = {},
): Promise<Server> {
  const p = port ?? (await freePort());
  const url = `http://127.0.0.1:${p}`;
  // UNDERLAY_SERVER_NODE_ARGS: node flags for the server, e.g. `--cpu-prof --cpu-prof-dir=DIR`
  // to see where a benchmark's server spends its time (NODE_OPTIONS refuses --cpu-prof).
  const nodeArgs = (process.env.UNDERLAY_SERVER_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const args = [...nodeArgs, CLI, 'serve', '--port', String(p), '--host', '127.0.0.1'];
  const proc = spawn(process.execPath, args, {
    // Tests end their sandboxes on stop unless they test keeping them.
    env: testEnv({ UNDERLAY_END_ON_STOP: '1', UNDERLAY_BARE_SESSIONS: '1', ...env }),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  proc.stderr?.on('data', (b: Buffer) => (log += b.toString()));
  // A test or bench that dies (an unhandled rejection skips its finally)
  // must not leave its server, and the server's sandboxes, running.
  const orphanGuard = () => proc.kill('SIGTERM');
  process.once('exit', orphanGuard);
  proc.once('exit', () => process.removeListener('exit', orphanGuard));
  // Generous: under emulation (the VM tier) a start takes 30 s and more.
  const end = Date.now() + 120_000;
  while (
    !(await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (Date.now() > end || proc.exitCode !== null) {
      proc.kill('SIGKILL');
      throw new Error(`server did not start:\n${log}`);
    }
    await sleep(100);
  }
  return {
    url,
    port: p,
    proc,
    log: () => log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

export async function launchBrowser(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`no chromium at ${CHROMIUM} (apt-get install chromium)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** The visible text of the xterm rows (of one terminal panel, or of all). */
export async function screenText(page: Page, scope = ''): Promise<string> {
  return page.$$eval(`${scope} [data-testid="xterm"] .xterm-rows > div`, (rows) =>
    rows.map((r) => r.textContent ?? '').join('\n'),
  );
}

export async function waitForScreen(
  page: Page,
  re: RegExp,
  ms = 15_000,
  scope = '',
): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const t = await screenText(page, scope).catch(() => '');
    if (re.test(t)) return t;
    if (Date.now() > end) {
      // What the page says besides the terminal (an error, a notice) tells why.
      const body = await page
        .innerText('body')
        .then((b) => b.slice(0, 1500))
        .catch((err: unknown) => `(page text unreadable: ${String(err)})`);
      throw new Error(`screen never matched ${re}; it shows:\n${t}\nthe page reads:\n${body}`);
    }
    await sleep(50);
  }
}

/**
 * A server and a browser for one describe block, started in `before` and
 * stopped in `after`. `ready()` throws the setup error in the test that
 * needs them (so it fails, never skips). `server` may be replaced (a test
 * that restarts the server) and is what `after` stops.
 */
/**
 * A server of the describe block's own, started in `before` with `env` and
 * stopped in `after`; the getter throws the setup error in the test that
 * needs it (so it fails, never skips).
 */
export function serverSuite(
  before: (fn: () => Promise<void>) => void,
  after: (fn: () => Promise<void>) => void,
  env: Record<string, string> = {},
): () => Server {
  let srv: Server | undefined;
  let setupError: unknown;
  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      srv = await startServer(undefined, env);
    } catch (e) {
      setupError = e;
    }
  });
  after(async () => {
    await srv?.stop();
  });
  return () => {
    if (!srv) throw setupError ?? new Error('server not started');
    return srv;
  };
}

export function browserSuite(
  before: (fn: () => Promise<void>) => void,
  after: (fn: () => Promise<void>) => void,
  env: Record<string, string> = {},
): {
  server: Server | undefined;
  browser: Browser | undefined;
  ready(): { server: Server; browser: Browser };
} {
  let setupError: unknown;
  const s = {
    server: undefined as Server | undefined,
    browser: undefined as Browser | undefined,
    ready() {
      if (setupError) throw setupError;
      return { server: s.server as Server, browser: s.browser as Browser };
    },
  };
  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      s.server = await startServer(undefined, env);
      s.browser = await launchBrowser();
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    await s.browser?.close();
    await s.server?.stop();
    // The server's log, for a failure that only shows in the page.
    if (s.server) {
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      fs.writeFileSync(path.join(ARTIFACTS, `server-${s.server.port}.log`), s.server.log());
    }
  });
  return s;
}

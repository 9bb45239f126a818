/**
 * The browser terminal in headless Chromium (Debian's chromium driven by
 * playwright-core): start a sandbox, type `hostname`, see the sandbox's
 * hostname; reload and find the same output. Screenshots go to
 * test/artifacts/ - look at them.
 */
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CLI, REPO, sleep, testEnv } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO, 'test', 'artifacts');

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function screenText(page: Page): Promise<string> {
  return page.$$eval('[data-testid="xterm"] .xterm-rows > div', (rows) =>
    rows.map((r) => r.textContent ?? '').join('\n'),
  );
}

async function waitForScreen(page: Page, re: RegExp, ms = 15_000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const t = await screenText(page).catch(() => '');
    if (re.test(t)) return t;
    if (Date.now() > end) throw new Error(`screen never matched ${re}; it shows:\n${t}`);
    await sleep(50);
  }
}

let setupError: unknown;
describe('terminal in the browser', () => {
  let server: ChildProcess;
  let browser: Browser;
  let url = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      if (!fs.existsSync(CHROMIUM))
        throw new Error(`no chromium at ${CHROMIUM} (apt-get install chromium)`);
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      server = spawn(
        process.execPath,
        [CLI, 'serve', '--port', String(port), '--host', '127.0.0.1'],
        { env: testEnv(), stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let log = '';
      server.stderr?.on('data', (b: Buffer) => (log += b.toString()));
      const end = Date.now() + 20_000;
      while (
        !(await fetch(`${url}/healthz`).then(
          (r) => r.ok,
          () => false,
        ))
      ) {
        if (Date.now() > end || server.exitCode !== null)
          throw new Error(`server did not start:\n${log}`);
        await sleep(100);
      }
      browser = await chromium.launch({
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
      fs.mkdirSync(ARTIFACTS, { recursive: true });
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    await browser?.close();
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
  });

  sysTest(
    'open the page, start a sandbox, type `hostname`, see the sandbox hostname; a reload replays the terminal',
    SYSTEM_NEEDS,
    async () => {
      if (setupError) throw setupError;
      const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
      await page.goto(url);
      await page.getByRole('button', { name: 'Start a sandbox' }).click();
      await waitForScreen(page, /root@lab:~#/);
      await page.locator('[data-testid="xterm"]').first().click();
      await page.keyboard.type('hostname; echo "─é😀 $((6*7))"\n');
      const screen = await waitForScreen(page, /^lab$/m);
      assert.match(screen, /─é😀 42/);
      await page.screenshot({ path: path.join(ARTIFACTS, 'terminal.png') });
      // Reload: same session, same shell, output replayed.
      await page.reload();
      const again = await waitForScreen(page, /─é😀 42/);
      assert.match(again, /^lab$/m);
      await page.keyboard.type('echo $$\n');
      await waitForScreen(page, /^\d+\s*$/m);
      await page.screenshot({ path: path.join(ARTIFACTS, 'terminal-after-reload.png') });
    },
    { timeout: 90_000 },
  );
});

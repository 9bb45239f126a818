/**
 * The browser terminal in headless Chromium (Debian's chromium driven by
 * playwright-core), on the free-sandbox page: start a sandbox, type `hostname`, see the sandbox's
 * hostname; reload and find the same output. Screenshots go to
 * test/artifacts/ - look at them.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { ARTIFACTS, browserSuite, waitForScreen } from '../helpers/browser';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

describe('terminal in the browser', () => {
  const suite = browserSuite(before, after);

  sysTest(
    'open the page, start a sandbox, type `hostname`, see the sandbox hostname; a reload replays the terminal',
    SYSTEM_NEEDS,
    async () => {
      const { server, browser } = suite.ready();
      const url = server.url;
      const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
      await page.goto(`${url}/sandbox`);
      await page.getByRole('button', { name: 'Start a sandbox' }).click();
      await waitForScreen(page, /root@lab:~#/);
      await page.locator('[data-testid="xterm"]').first().click();
      await page.keyboard.type('hostname; echo "─é😀 $((6*7))"\n');
      // Wait for the last line the command prints, not the first: on a busy machine the
      // echo may arrive in a later frame than `lab`.
      const screen = await waitForScreen(page, /─é😀 42/);
      assert.match(screen, /^lab$/m);
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

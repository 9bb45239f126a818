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
import { decodePng } from '../helpers/png';
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

  sysTest(
    'underscores are drawn at device pixel ratio 1 and 2 (cpu.cfs_quota_us must not read "cpu.cfs quota us")',
    SYSTEM_NEEDS,
    async () => {
      const { server, browser } = suite.ready();
      for (const dpr of [1, 2]) {
        const ctx = await browser.newContext({
          viewport: { width: 1200, height: 700 },
          deviceScaleFactor: dpr,
        });
        const page = await ctx.newPage();
        await page.goto(`${server.url}/sandbox`);
        await page.getByRole('button', { name: 'Start a sandbox' }).click();
        await waitForScreen(page, /root@lab:~#/);
        await page.locator('[data-testid="xterm"]').first().click();
        await page.keyboard.type("printf '%s\\n' ____________________\n");
        await waitForScreen(page, /^_{20}\s*$/m);
        // The pixels of the row that holds only underscores: some must differ from the background.
        const rows = page.locator('[data-testid="xterm"] .xterm-rows > div');
        let row = -1;
        for (let i = 0; i < (await rows.count()) && row < 0; i++)
          if (/^_{20}\s*$/.test((await rows.nth(i).textContent()) ?? '')) row = i;
        const img = decodePng(await rows.nth(row).screenshot());
        const bg = [img.rgba[0], img.rgba[1], img.rgba[2]] as number[];
        let ink = 0;
        for (let p = 0; p < img.width * img.height; p++) {
          let d = 0;
          for (let c = 0; c < 3; c++)
            d += Math.abs((img.rgba[p * 4 + c] as number) - (bg[c] as number));
          if (d > 120) ink++;
        }
        // 20 underscores, each at least a few device pixels wide, one row high.
        assert.ok(ink >= 20 * 4 * dpr, `DPR ${dpr}: ${ink} pixels of underscore drawn`);
        await ctx.close();
      }
    },
    { timeout: 90_000 },
  );

  sysTest(
    'a click on the tab already shown keeps the keys going to the shell; a 100 KB paste runs and the prompt comes back',
    SYSTEM_NEEDS,
    async () => {
      const { server, browser } = suite.ready();
      const page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
      await page.goto(`${server.url}/sandbox`);
      await page.getByRole('button', { name: 'Start a sandbox' }).click();
      await waitForScreen(page, /root@lab:~#/);
      await page.locator('[data-testid="xterm"]').first().click();
      await page.getByRole('tab', { name: 'T1' }).click();
      await page.keyboard.type('echo tab-$((1+1))\n');
      await waitForScreen(page, /^tab-2\s*$/m);
      // A real paste (a ClipboardEvent, as Ctrl+V makes): one 100 KB line ending in a newline.
      // (A string: this project's tsconfig has no DOM types.)
      await page.evaluate(`{
        const data = new DataTransfer();
        data.setData('text/plain', ': ' + 'x'.repeat(100000) + '; echo pasted-$((2+3))\\n');
        document.activeElement.dispatchEvent(
          new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }),
        );
      }`);
      await waitForScreen(page, /^pasted-5\s*\n\s*root@lab:~#\s*$/m, 30_000);
      await page.close();
    },
    { timeout: 90_000 },
  );
});

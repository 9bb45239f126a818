/**
 * The student web app in headless Chromium: open the catalog, start the
 * UTS/IPC lab, use Run on a step's code block, answer and Check (pass),
 * Check too early (fail) and see the state-based hint, reload mid-lab and
 * find the same terminal output and progress, lose the server (a clear
 * reconnecting state) and restart it (progress kept, sandbox re-adopted).
 * Bad input: an unknown lab is a real 404; another student's session is
 * refused. Screenshots of the catalog and the lab view go to test/artifacts/.
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { io } from 'socket.io-client';
import { ARTIFACTS, browserSuite, startServer, waitForScreen } from '../helpers/browser';
import { sleep } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const T = (name: string) => `[data-terminal-name="${name}"]`;

/** A new student (own browser context) on a lab's page, at T1's prompt; `leave` ends the lab. */
async function openLab(
  browser: Browser,
  url: string,
  lab: string,
  viewport = { width: 1400, height: 860 },
) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  await page.goto(`${url}/labs/${lab}`);
  await waitForScreen(page, /root@lab:~#/, 20_000, T('T1'));
  const leave = async () => {
    await ctx.request.delete(`${url}/api/labs/${lab}/session`, { headers: { origin: url } });
    await ctx.close();
  };
  return { ctx, page, leave };
}

async function stepsDone(page: Page): Promise<string[]> {
  return page.$$eval('.steps-nav button.passed', (bs) =>
    bs.map((b) => b.getAttribute('aria-label') ?? ''),
  );
}

describe('the student web app', () => {
  // This server's stop keeps the sandboxes, as in production: the restart re-adopts them.
  const suite = browserSuite(before, after, { UNDERLAY_END_ON_STOP: '0' });

  sysTest(
    'catalog → lab → Run → Check passes; an early Check fails with a hint; reload and restart keep everything',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));

      // The catalog: every lab as a card, with progress.
      await page.goto(srv.url);
      await page.waitForSelector('[data-testid="lab-ns-uts-ipc"]');
      // In the order of the learning path; the format's example lab is not listed.
      assert.deepEqual(
        await page.$$eval('[data-testid^="lab-"]', (els) =>
          els.map((e) => e.getAttribute('data-testid')),
        ),
        [
          'lab-ns-uts-ipc',
          'lab-ns-pid',
          'lab-ns-files-nsenter',
          'lab-ns-mount-propagation',
          'lab-rootfs-chroot-pivot',
          'lab-ns-user',
          'lab-ns-net',
          'lab-cg-cpu-quota',
          'lab-cg-weights-cpuset-memory',
          'lab-cap-setcap-ping',
          'lab-ovl-basics',
          'lab-ovl-image-layers',
          'lab-pid1-shim',
          'lab-container-capstone',
        ],
      );
      assert.match(
        (await page.textContent('[data-testid="lab-ns-pid"]')) ?? '',
        /After: Your first namespaces/,
      );
      await page.screenshot({ path: path.join(ARTIFACTS, 'catalog.png') });

      // Start the lab: the prompt appears in T1.
      const sockets: { url: string; closed: boolean }[] = [];
      page.on('websocket', (ws) => {
        const s = { url: ws.url(), closed: false };
        sockets.push(s);
        ws.on('close', () => (s.closed = true));
      });
      await page.click('[data-testid="lab-ns-uts-ipc"]');
      await waitForScreen(page, /root@lab:~#/, 20_000, T('T1'));

      // Step 1 (a knowledge check): Run the block, read the inode off the screen, answer.
      await page.getByRole('button', { name: 'Run in T1' }).first().click();
      const screen = await waitForScreen(page, /uts:\[\d+\]/, 15_000, T('T1'));
      const inode = /uts:\[(\d+)\]/.exec(screen)?.[1] as string;
      await page.getByLabel("The inode of your shell's UTS namespace").first().fill(inode);
      await page.getByRole('button', { name: 'Check', exact: true }).click();
      await page.waitForSelector('[data-testid="check-result"].pass');
      assert.match(
        (await page.textContent('[data-testid="check-result"]')) ?? '',
        new RegExp(`uts:\\[${inode}\\]`),
      );
      await page.getByRole('button', { name: 'Next step →' }).click();
      // One socket for the session: the one its answer opened early
      // (preconnect) is the one the page uses, none opened twice or dropped.
      assert.deepEqual(
        sockets.map((s) => [/\/socket\.io\//.test(s.url), s.closed]),
        [[true, false]],
      );

      // Step 2: predict first, then Check before doing anything: it fails, and the hint says why.
      await page.getByRole('button', { name: 'lab (unchanged)' }).click();
      await page.getByRole('button', { name: 'Lock in and reveal' }).click();
      assert.match((await page.getByTestId('predict-answer').textContent()) ?? '', /^Right\./);
      await page.getByRole('button', { name: 'Check', exact: true }).click();
      await page.waitForSelector('[data-testid="check-result"].fail');
      assert.match(
        (await page.textContent('[data-testid="check-result"]')) ?? '',
        /No process is in a UTS namespace/,
      );
      await page.getByRole('button', { name: 'Hint' }).click();
      await page.waitForSelector('[data-testid="hint"]');
      assert.match(
        (await page.textContent('[data-testid="hint"]')) ?? '',
        /No process is in a UTS namespace of its own yet/,
      );

      // Run the T2 block (the terminal tab switches), then Check: pass.
      await page.getByRole('button', { name: 'Run in T2' }).click();
      await waitForScreen(page, /^lab-box\s*$/m, 15_000, T('T2'));
      await page.getByRole('button', { name: 'Check', exact: true }).click();
      await page.waitForSelector('[data-testid="check-result"].pass');
      assert.deepEqual((await stepsDone(page)).length, 2);
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-dark.png') });
      await page.emulateMedia({ colorScheme: 'light' });

      // Reload mid-lab: same shells, output replayed, progress shown.
      await page.reload();
      await page.getByRole('tab', { name: 'T2' }).click();
      await waitForScreen(page, /^lab-box\s*$/m, 15_000, T('T2'));
      assert.equal((await stepsDone(page)).length, 2);
      await page.getByRole('tab', { name: 'T1' }).click();
      // Waited for: T1 renders its replay once it is shown (and fitted) again.
      await waitForScreen(page, new RegExp(`uts:\\[${inode}\\]`), 15_000, T('T1'));

      // The server goes away: a clear reconnecting state, not a blank page.
      await srv.stop();
      await page.waitForSelector('text=Connection lost - reconnecting', { timeout: 15_000 });
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-reconnecting.png') });
      assert.match((await page.textContent('.lab-guide')) ?? '', /A message queue on the "host"/);

      // It comes back on the same port: progress kept, the sandbox re-adopted (with a notice).
      suite.server = await startServer(srv.port);
      await page.waitForSelector('text=The server restarted', { timeout: 30_000 });
      await waitForScreen(page, /root@lab:~#/, 20_000, T('T1'));
      await page.reload();
      await page.waitForSelector('.steps-nav');
      assert.equal((await stepsDone(page)).length, 2, 'progress survives a restart');
      await page.getByRole('tab', { name: 'T1' }).click();
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type('hostname\n');
      await waitForScreen(page, /^lab\s*$/m, 15_000, T('T1'));
      // The wrap-up points at the next lab on the path.
      await page.getByRole('button', { name: 'Wrap-up' }).click();
      const next = page.getByTestId('next-lab');
      await next.waitFor();
      assert.equal(await next.getAttribute('href'), '/labs/ns-pid');
      assert.deepEqual(errors, [], 'no uncaught errors in the page');
    },
    { timeout: 180_000 },
  );

  sysTest(
    'Hint pressed early does not use up the hint for the mistake; Skip asks, and "do it for me" applies the solution',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'uts-hostname');
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      const hints = page.locator('[data-testid="hint"]');
      // Early: the written hint, then nothing more to say (not "no more hints" for good).
      await page.getByRole('button', { name: 'Hint' }).click();
      await hints.first().waitFor();
      assert.match((await hints.first().textContent()) ?? '', /unshare --uts bash/);
      await page.getByRole('button', { name: 'Hint' }).click();
      await page.getByTestId('no-more-hints').waitFor();
      // The mistake, typed: the hint written for it shows now, and again while it is true.
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type("unshare --uts sh -c 'hostname lab-b0x; exec sleep 600' &\n");
      await waitForScreen(page, /\[1\] \d+/, 15_000, T('T1'));
      await page.getByRole('button', { name: 'Hint' }).click();
      await hints.nth(1).waitFor();
      assert.match((await hints.nth(1).textContent()) ?? '', /named lab-b0x/);
      assert.equal(await page.getByTestId('no-more-hints').count(), 0);
      await page.getByRole('button', { name: 'Hint' }).click();
      await page.getByTestId('same-hint').waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-hints.png') });

      // Skip asks first; "do it for me" runs the step's solution and moves on.
      await page.getByRole('button', { name: 'Skip', exact: true }).click();
      const choice = page.getByTestId('skip-choice');
      await choice.waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-skip.png') });
      await choice.getByRole('button', { name: 'Skip and do it for me' }).click();
      await page.getByRole('heading', { name: /^2\. / }).waitFor();
      assert.match(
        (await page.getByLabel('progress').textContent()) ?? '',
        /^0\/2 steps \(1 skipped\)$/,
        'a skip is not a pass',
      );
      // The next step knows the namespace the solution made: Check names it.
      await page.getByRole('button', { name: 'Check', exact: true }).click();
      await page.waitForSelector('[data-testid="check-result"].fail');
      assert.match(
        (await page.textContent('[data-testid="check-result"]')) ?? '',
        /Still alive in UTS namespace \d+/,
      );
      assert.deepEqual(errors, []);
      await leave();
    },
  );

  sysTest(
    'bad input: an unknown lab is a 404 page; another student cannot use my session',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const page = await browser.newPage();
      const res = await page.goto(`${srv.url}/labs/no-such-lab`);
      assert.equal(res?.status(), 404);
      assert.match((await page.textContent('main')) ?? '', /Not found/);

      const a = await browser.newContext();
      const b = await browser.newContext();
      const start = (ctx: typeof a) =>
        ctx.request
          .post(`${srv.url}/api/labs/uts-hostname/session`, { headers: { origin: srv.url } })
          .then((r) => r.json() as Promise<{ session: string; token: string }>);
      const sa = await start(a);
      const sb = await start(b);
      assert.notEqual(sa.session, sb.session, 'each student gets a sandbox of their own');
      // B presents A's session id with B's own token: refused at the handshake.
      const err = await new Promise<string>((resolve) => {
        const s = io(srv.url, {
          transports: ['websocket'],
          auth: { v: 1, session: sa.session, token: sb.token },
          reconnection: false,
        });
        s.on('connect', () => {
          s.close();
          resolve('connected');
        });
        s.on('connect_error', (e) => {
          s.close();
          resolve(e.message);
        });
      });
      assert.equal(err, 'unauthorized');
      // B's check runs against B's sandbox, never A's (progress is per cookie).
      const check = await b.request.post(
        `${srv.url}/api/labs/uts-hostname/steps/no-such-step/check`,
        {
          headers: { origin: srv.url },
        },
      );
      assert.equal(check.status(), 404);
      const bad = await b.request.post(
        `${srv.url}/api/labs/uts-hostname/steps/private-hostname/check`,
        { headers: { origin: srv.url, 'content-type': 'application/json' }, data: '{"answer": 5}' },
      );
      assert.equal(bad.status(), 400);
      assert.match(((await bad.json()) as { error: string }).error, /answer/);
      for (const ctx of [a, b])
        await ctx.request.delete(`${srv.url}/api/labs/uts-hostname/session`, {
          headers: { origin: srv.url },
        });
      await a.close();
      await b.close();
      await sleep(10);
    },
    { timeout: 60_000 },
  );

  sysTest(
    'a lab shell that exits says so, and one click gives a new shell in the same sandbox',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'uts-hostname');
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type('touch /root/kept; exit\n');
      await waitForScreen(page, /shell exited with status 0/, 15_000, T('T1'));
      await page.getByRole('button', { name: 'New shell for T1' }).click();
      await waitForScreen(page, /root@lab:~#/, 20_000, T('T1'));
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type('ls /root/kept && echo same-$((40+2))\n');
      await waitForScreen(page, /^same-42\s*$/m, 15_000, T('T1'));
      await leave();
    },
    { timeout: 90_000 },
  );

  sysTest(
    'two tabs on one lab: both show what either types (neither goes blind)',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { ctx, page, leave } = await openLab(browser, srv.url, 'uts-hostname');
      const second = await ctx.newPage();
      await second.goto(`${srv.url}/labs/uts-hostname`);
      await waitForScreen(second, /root@lab:~#/, 20_000, T('T1'));
      await second.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await second.keyboard.type('echo from-second-$((1+1))\n');
      await waitForScreen(second, /^from-second-2\s*$/m, 15_000, T('T1'));
      await waitForScreen(page, /^from-second-2\s*$/m, 15_000, T('T1'));
      // And the older tab still types and sees, and so does the newer one.
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type('echo from-first-$((2+2))\n');
      await waitForScreen(page, /^from-first-4\s*$/m, 15_000, T('T1'));
      await waitForScreen(second, /^from-first-4\s*$/m, 15_000, T('T1'));
      await leave();
    },
    { timeout: 90_000 },
  );

  sysTest(
    'keyboard: Ctrl+Shift+E leaves the terminal, and Shift+Tab then reaches Check',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'uts-hostname');
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      const inTerminal = () =>
        page.evaluate(`!!document.activeElement?.closest('[data-testid="xterm"]')`);
      assert.equal(await inTerminal(), true);
      await page.keyboard.press('Tab'); // Tab stays in the shell (completion)
      assert.equal(await inTerminal(), true);
      await page.keyboard.press('Control+Shift+E');
      assert.equal(await inTerminal(), false, 'focus left the terminal');
      assert.equal(await page.evaluate(`document.activeElement?.getAttribute('role')`), 'tab');
      let reached = false;
      for (let i = 0; i < 12 && !reached; i++) {
        await page.keyboard.press('Shift+Tab');
        reached = (await page.evaluate(`document.activeElement?.textContent?.trim()`)) === 'Check';
      }
      assert.ok(reached, 'Shift+Tab reaches Check');
      await leave();
    },
    { timeout: 60_000 },
  );

  sysTest(
    "screen-reader mode mirrors the terminal's text for assistive technology, and is remembered",
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'uts-hostname');
      const tree = `${T('T1')} .xterm-accessibility-tree`;
      assert.equal(await page.locator(tree).count(), 0, 'off by default');
      await page.getByRole('button', { name: 'Screen reader' }).click();
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type('echo sr-$((2+3))\n');
      await page.waitForFunction(
        `[...document.querySelectorAll('${tree} *')].some((e) => /^sr-5\\s*$/.test(e.textContent || ''))`,
        undefined,
        { timeout: 15_000 },
      );
      await page.reload();
      await waitForScreen(page, /sr-5/, 20_000, T('T1'));
      assert.equal(
        await page.getByRole('button', { name: 'Screen reader' }).getAttribute('aria-pressed'),
        'true',
      );
      await page.getByRole('button', { name: 'Screen reader' }).click();
      await leave();
    },
    { timeout: 90_000 },
  );

  sysTest(
    'a phone-sized screen (400 px): nothing wider than the screen, the steps full width',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'ns-uts-ipc', {
        width: 400,
        height: 800,
      });
      const m = JSON.parse(
        (await page.evaluate(
          `JSON.stringify({ page: document.scrollingElement.scrollWidth, header: document.querySelector('header').scrollWidth, guide: document.querySelector('.lab-guide').getBoundingClientRect().width })`,
        )) as string,
      ) as { page: number; header: number; guide: number };
      assert.ok(m.page <= 400 && m.header <= 400, `wider than the screen: ${JSON.stringify(m)}`);
      assert.ok(m.guide >= 380, `the steps are ${m.guide} px wide`);
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-400px.png') });
      await leave();
    },
    { timeout: 60_000 },
  );

  sysTest(
    'untrusted text: a hint that echoes a student-chosen hostname shows it as text, runs no script',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'ns-uts-ipc');
      // The student names the sandbox with markup; step 2's hint script echoes $(hostname).
      // (No '=' inside the unquoted attribute value: markdown would not see a tag.)
      const payload = '<img src=x onerror=window.__pwned++>';
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      // (hostname(1) refuses such a name; the syscall does not.)
      await page.keyboard.type(
        `python3 -c 'import socket; socket.sethostname("${payload}")'; echo done-$((6*7))\n`,
      );
      await waitForScreen(page, /^done-42\s*$/m, 15_000, T('T1'));
      await page.locator('.steps-nav button').nth(1).click();
      await page.getByRole('button', { name: 'lab (unchanged)' }).click();
      await page.getByRole('button', { name: 'Lock in and reveal' }).click();
      assert.match((await page.getByTestId('predict-answer').textContent()) ?? '', /^Right\./);
      await page.getByRole('button', { name: 'Hint' }).click();
      await page.waitForSelector('[data-testid="hint"]');
      assert.ok(
        ((await page.textContent('[data-testid="hint"]')) ?? '').includes(payload),
        `the markup is shown as the text it is: ${await page.textContent('[data-testid="hint"]')}`,
      );
      assert.equal(await page.locator('[data-testid="hint"] img').count(), 0);
      // Reloading replays the hint from localStorage: still text.
      await page.reload();
      await page.locator('.steps-nav button').nth(1).click();
      await page.waitForSelector('[data-testid="hint"]');
      assert.equal(await page.locator('[data-testid="hint"] img').count(), 0);
      assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined');
      await leave();
    },
    { timeout: 90_000 },
  );

  sysTest(
    'Start step over: a fresh sandbox at step 3 with steps 1-2 done, where step 3 can be done at once',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const { page, leave } = await openLab(browser, srv.url, 'ns-files-nsenter');
      const before = await page.getAttribute('[data-testid="lab-terminals"]', 'data-session');
      await page.locator('.steps-nav button').nth(2).click();
      await page.getByRole('button', { name: 'Start step over' }).click();
      await page.waitForSelector('[data-testid="restart-choice"]');
      await page.getByTestId('restart-choice').scrollIntoViewIfNeeded();
      await page.screenshot({ path: path.join(ARTIFACTS, 'lab-restart-step.png') });
      await page.getByRole('button', { name: 'Fresh sandbox at this step' }).click();
      await page.waitForSelector('text=A fresh sandbox, at the start of step 3', {
        timeout: 60_000,
      });
      await waitForScreen(page, /root@lab:~#/, 20_000, T('T1'));
      assert.notEqual(
        await page.getAttribute('[data-testid="lab-terminals"]', 'data-session'),
        before,
        'other terminals, of the new sandbox',
      );
      // Steps 1 and 2 count as done for the student (skipped, not passed).
      assert.equal(await page.locator('.steps-nav button.skipped').count(), 2);
      // The mystery of the new sandbox is there: read its token and answer.
      await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
      await page.keyboard.type(
        'echo tok-$(nsenter -t $(pgrep -P $(pgrep -x unshare)) --mount cat /run/secret/token)-end\n',
      );
      const screen = await waitForScreen(page, /tok-[0-9a-f]{12}-end/, 15_000, T('T1'));
      const token = /tok-([0-9a-f]{12})-end/.exec(screen)?.[1] as string;
      await page.getByLabel("The token in the mystery's /run/secret/token").fill(token);
      await page.getByRole('button', { name: 'Check', exact: true }).click();
      await page.waitForSelector('[data-testid="check-result"].pass');
      await leave();
    },
    { timeout: 120_000 },
  );

  sysTest(
    'live panels: a loop at ~100% then ~50% under a quota, a whiteout appears in upper, unshare splits the PID group, a slave mount namespace',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const typeIn = async (page: Page, cmd: string, done: RegExp) => {
        await page.locator(`${T('T1')} [data-testid="xterm"]`).click();
        await page.keyboard.type(`${cmd}\n`);
        await waitForScreen(page, done, 15_000, T('T1'));
      };
      const pct = async (page: Page) =>
        Number(((await page.textContent('[data-testid="cpu-now"]')) ?? '').replace('%', ''));
      const until = async (what: string, ok: () => Promise<boolean>) => {
        for (let i = 0; !(await ok()); i++) {
          assert.ok(i < 600, `waited too long for ${what}`);
          await sleep(100);
        }
      };

      // cg-cpu-quota, step 3: the loop in lab, before and after the quota.
      {
        const { page, leave } = await openLab(browser, srv.url, 'cg-cpu-quota');
        await typeIn(
          page,
          "C=$( [ -e /sys/fs/cgroup/cgroup.controllers ] && echo /sys/fs/cgroup || echo /sys/fs/cgroup/cpu ); mkdir $C/lab; bash -c 'while :; do :; done' & echo $! > $C/lab/cgroup.procs; echo moved-$((6*7))",
          /^moved-42\s*$/m,
        );
        await page.locator('.steps-nav button').nth(2).click();
        await page.waitForSelector('[data-testid="panel-cgroup-cpu"]');
        await until('the loop near 100%', async () => (await pct(page)) >= 70);
        await typeIn(
          page,
          'if [ -e $C/lab/cpu.max ]; then echo "50000 100000" > $C/lab/cpu.max; else echo 50000 > $C/lab/cpu.cfs_quota_us; fi; echo quota-$((6*7))',
          /^quota-42\s*$/m,
        );
        await page.waitForSelector('[data-testid="quota-line"]', { state: 'attached' });
        // Two readings in a row in the window: the chart has left the 100% plateau.
        let inWindow = 0;
        await until('the loop near 50%', async () => {
          const v = await pct(page);
          inWindow = v >= 35 && v <= 62 ? inWindow + 1 : 0;
          if (inWindow === 1) await sleep(500);
          return inWindow >= 2;
        });
        await page.getByTestId('kernel-panels').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-cpu.png') });
        await page.emulateMedia({ colorScheme: 'dark' });
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-cpu-dark.png') });
        await page.emulateMedia({ colorScheme: 'light' });
        await page.setViewportSize({ width: 400, height: 860 });
        await page.getByTestId('kernel-panels').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-cpu-400.png') });
        await typeIn(page, 'kill %1; echo killed-$((6*7))', /^killed-42\s*$/m);
        await leave();
      }

      // ovl-basics, step 3: rm in merged, a whiteout in upper.
      {
        const { page, leave } = await openLab(browser, srv.url, 'ovl-basics');
        await typeIn(
          page,
          'mount -t overlay overlay -o userxattr,lowerdir=/lab/ovl/lower,upperdir=/lab/ovl/upper,workdir=/lab/ovl/work /lab/ovl/merged; echo mounted-$((6*7))',
          /^mounted-42\s*$/m,
        );
        await page.locator('.steps-nav button').nth(2).click();
        await page.waitForSelector('[data-layer="merged"] li:has-text("b.txt")');
        await typeIn(page, 'rm /lab/ovl/merged/b.txt; echo removed-$((6*7))', /^removed-42\s*$/m);
        await page.waitForSelector(
          '[data-layer="upper"] li[data-type="whiteout"]:has-text("b.txt")',
        );
        await page.getByTestId('kernel-panels').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-overlay.png') });
        await leave();
      }

      // ns-pid, step 3: a new PID namespace is a group of its own.
      {
        const { page, leave } = await openLab(browser, srv.url, 'ns-pid');
        await page.locator('.steps-nav button').nth(2).click();
        await page.waitForSelector('[data-testid="ns-group-pid"]');
        assert.equal(await page.locator('[data-testid="ns-group-pid"]').count(), 1);
        await typeIn(
          page,
          'unshare --pid --fork --mount-proc sleep 300 & sleep 0.2; echo split-$((6*7))',
          /^split-42\s*$/m,
        );
        await until(
          'two PID namespaces',
          async () => (await page.locator('[data-testid="ns-group-pid"]').count()) === 2,
        );
        await page.getByTestId('kernel-panels').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-namespaces.png') });
        await leave();
      }

      // ns-mount-propagation, step 4: a slave copy and what it received, per namespace.
      {
        const { page, leave } = await openLab(browser, srv.url, 'ns-mount-propagation');
        await page.waitForSelector('[data-testid="mnt-namespace"]');
        await typeIn(
          page,
          // Until the copy is a slave (never a fixed wait): only then does the mount below reach it.
          "mount --make-shared /lab/prop; unshare --mount --propagation unchanged sh -c 'mount --make-slave /lab/prop; exec sleep 300' & " +
            'until grep -q master: /proc/$!/mountinfo; do sleep 0.05; done; mount -t tmpfs fromsandbox /lab/prop/c; echo slave-$((6*7))',
          /^slave-42\s*$/m,
        );
        await page.locator('.steps-nav button').nth(3).click();
        await page.waitForSelector(
          '[data-testid="mnt-namespace"][data-sandbox="no"] li[data-target="/lab/prop/c"][data-tags^="master:"]',
        );
        assert.equal(await page.locator('[data-testid="mnt-namespace"]').count(), 2);
        assert.match(
          (await page.textContent('[data-testid="mnt-namespace"][data-sandbox="no"]')) ?? '',
          /sleep \(T1\)[\s\S]*slave of \d+/,
        );
        await page.getByTestId('kernel-panels').scrollIntoViewIfNeeded();
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-mounts.png') });
        await page.emulateMedia({ colorScheme: 'dark' });
        await page.screenshot({ path: path.join(ARTIFACTS, 'panel-mounts-dark.png') });
        await page.emulateMedia({ colorScheme: 'light' });
        await leave();
      }
    },
    { timeout: 180_000 },
  );
});

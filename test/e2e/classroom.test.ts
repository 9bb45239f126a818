/**
 * Joining a class in Chromium (docs/classroom.md): the instructor makes a
 * cohort with the CLI, a student opens the join link (the code filled in),
 * gives a name and is in; a wrong code and a closed class are refused in
 * words with a hint; the same student joining again takes no second seat.
 * A name with markup shows as text. Screenshot: test/artifacts/join.png.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { ARTIFACTS, browserSuite, screenText, waitForScreen } from '../helpers/browser';
import { cli } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** Polls a condition (the page fills the code in after hydration). */
async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('joining a class', () => {
  const suite = browserSuite(before, after);

  sysTest(
    'join link → name → in; a wrong code and a closed class say why; joining again keeps one seat',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const name = `e2e-${Date.now().toString(36)}`;
      const made = await cli([
        'cohort',
        'create',
        name,
        '--labs',
        'ns-pid,ns-uts-ipc',
        '--seats',
        '5',
        '--url',
        srv.url,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const link = /students join at\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const code = /code=([A-Z0-9-]+)/.exec(link)?.[1] as string;
      assert.ok(link && code, made.stdout);

      // Ann opens the link: the code is there; she gives her name.
      const ann = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      const page = await ann.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(link);
      const codeBox = page.getByLabel('Class code');
      await until(async () => (await codeBox.inputValue()) === code, 'the code from the link');
      assert.equal(await codeBox.inputValue(), code);
      await page.getByLabel('Your name, as your instructor will see it').fill('Ann <b>Lee</b>');
      await page.screenshot({ path: path.join(ARTIFACTS, 'join.png') });
      await page.getByRole('button', { name: 'Join' }).click();
      const status = page.getByRole('status');
      await status.waitFor();
      assert.match(
        (await status.textContent()) ?? '',
        new RegExp(`You are in: ${name}, as Ann <b>Lee</b>\\.`),
      );
      assert.equal(
        await page.locator('[role="status"] b').count(),
        0,
        'the name is text, not markup',
      );
      await page.screenshot({ path: path.join(ARTIFACTS, 'join-done.png') });
      // Her resume link makes another browser Ann: the class's labs, not all of them.
      const resumeLink = ((await page.getByTestId('resume-link').textContent()) ?? '').trim();
      assert.match(resumeLink, /\/resume#[\w-]+\.[\w-]{22}$/);
      // A classmate who opens it is told whose link it is and who they would stop being.
      const cy = await browser.newContext();
      const pc = await cy.newPage();
      await pc.goto(`${link}`);
      await until(
        async () => (await pc.getByLabel('Class code').inputValue()) !== '',
        'the code from the link',
      );
      await pc.getByLabel('Your name, as your instructor will see it').fill('Cy');
      await pc.getByRole('button', { name: 'Join' }).click();
      await pc.getByText(`You are in: ${name}`).waitFor();
      await pc.goto(resumeLink);
      await pc.getByTestId('resume-preview').waitFor();
      assert.match(
        (await pc.getByTestId('resume-preview').textContent()) ?? '',
        new RegExp(
          `This link is Ann <b>Lee</b> in ${name}[\\s\\S]*This browser is Cy in ${name} now`,
        ),
      );
      await pc.getByRole('link', { name: 'Cancel' }).click();
      const still = (await (await cy.request.get(`${srv.url}/api/me`)).json()) as {
        cohorts: { name: string }[];
      };
      assert.deepEqual(
        still.cohorts.map((c) => c.name),
        ['Cy'],
        'opening the link changed nothing',
      );
      await cy.close();
      const ann2 = await browser.newContext();
      const p3 = await ann2.newPage();
      await p3.goto(resumeLink);
      await p3.getByRole('button', { name: 'Continue as Ann <b>Lee</b>' }).click();
      await p3.getByText('This browser is you now.').waitFor();
      assert.match((await p3.getByRole('status').textContent()) ?? '', /Ann <b>Lee<\/b> in /);
      assert.equal(new URL(p3.url()).hash, '', 'the key is dropped from the address bar');
      await p3.getByRole('link', { name: 'Your labs' }).click();
      await p3.getByTestId('class-scope').waitFor();
      assert.deepEqual(
        (
          await p3
            .locator('[data-testid^="lab-"]')
            .evaluateAll((els) => els.map((e) => e.getAttribute('data-testid')))
        ).sort(),
        ['lab-ns-pid', 'lab-ns-uts-ipc'],
      );
      await p3.screenshot({ path: path.join(ARTIFACTS, 'resume-catalog.png') });
      await ann2.close();
      assert.ok(await page.getByRole('link', { name: 'ns-pid' }).isVisible());
      const me = (await (await ann.request.get(`${srv.url}/api/me`)).json()) as {
        cohorts: { cohort: string; name: string }[];
      };
      assert.deepEqual(me.cohorts, [
        { cohort: name, name: 'Ann <b>Lee</b>', labs: ['ns-pid', 'ns-uts-ipc'] },
      ]);

      // Again, as "Ann": welcomed back, still one seat.
      await page.goto(link);
      await until(async () => (await codeBox.inputValue()) === code, 'the code from the link');
      await page.getByLabel('Your name, as your instructor will see it').fill('Ann');
      await page.getByRole('button', { name: 'Join' }).click();
      await page.getByRole('status').waitFor();
      assert.match((await page.getByRole('status').textContent()) ?? '', /Welcome back/);
      // Ann and Cy: Ann's second join took no second seat.
      assert.match(
        (await cli(['cohort', 'list'])).stdout,
        new RegExp(`^${name}\\s+\\S+\\s+open\\s+2/5`, 'm'),
      );

      // Bo mistypes the code, then the class is closed.
      const bo = await browser.newContext();
      const p2 = await bo.newPage();
      await p2.goto(`${srv.url}/join`);
      await p2.getByLabel('Class code').fill('ZZZZ-ZZZZ');
      await p2.getByLabel('Your name, as your instructor will see it').fill('Bo');
      await p2.getByRole('button', { name: 'Join' }).click();
      const alert = p2.locator('.result[role="alert"]');
      await alert.waitFor();
      assert.match(
        (await alert.textContent()) ?? '',
        /no class has the code "ZZZZ-ZZZZ".*Hint: check it with your instructor/,
      );
      await p2.emulateMedia({ colorScheme: 'dark' });
      await p2.screenshot({ path: path.join(ARTIFACTS, 'join-refused-dark.png') });
      assert.equal((await cli(['cohort', 'close', name])).code, 0);
      await p2.getByLabel('Class code').fill(code.toLowerCase());
      await p2.getByRole('button', { name: 'Join' }).click();
      await p2.getByText(`the class ${name} is closed`).waitFor();
      assert.deepEqual(errors, []);
      await ann.close();
      await bo.close();
    },
  );

  sysTest(
    'the instructor link shows the roster × steps, live; without the token nothing is shown',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const name = `dash-${Date.now().toString(36)}`;
      const made = await cli([
        'cohort',
        'create',
        name,
        '--labs',
        'uts-hostname,ns-uts-ipc',
        '--url',
        srv.url,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
      const instructorLink = /instructor\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const token = /#token=(\S+)/.exec(instructorLink)?.[1] as string;

      // A student joins and tries a step once (a wrong answer to a knowledge check).
      const ann = await browser.newContext();
      const req = ann.request;
      const origin = { origin: srv.url };
      await (await ann.newPage()).goto(`${srv.url}/join`); // the cookie, as a browser gets it
      const joined = await req.post(`${srv.url}/api/cohorts/join`, {
        headers: origin,
        data: { code, name: 'Ann <i>x</i>' },
      });
      assert.equal(joined.status(), 200, await joined.text());
      const started = await req.post(`${srv.url}/api/labs/ns-uts-ipc/session`, { headers: origin });
      assert.equal(started.status(), 200, await started.text());
      const check = await req.post(`${srv.url}/api/labs/ns-uts-ipc/steps/look-first/check`, {
        headers: origin,
        data: { answer: '1' },
      });
      assert.equal(check.status(), 200, await check.text());

      // The instructor's page: Ann's row, one attempt on look-first, her name as text.
      const inst = await browser.newContext({ viewport: { width: 1200, height: 600 } });
      const page = await inst.newPage();
      await page.goto(instructorLink);
      const cellSel = `tr[data-student="Ann <i>x</i>"] td[data-step="ns-uts-ipc/look-first"]`;
      await page.waitForSelector(cellSel);
      assert.equal((await page.textContent(cellSel))?.trim(), '1');
      assert.equal(await page.getAttribute(cellSel, 'data-current'), 'yes', 'where Ann is');
      assert.match(
        (await page.textContent(`tr[data-student="Ann <i>x</i>"] td:nth-of-type(1)`)) ?? '',
        /just now|min ago/,
      );
      assert.equal(
        await page.locator('[data-testid="roster"] i').count(),
        0,
        'a name is text, not markup',
      );
      await page.screenshot({ path: path.join(ARTIFACTS, 'instructor.png') });

      // Live: a second attempt shows up on the open page by itself.
      await req.post(`${srv.url}/api/labs/ns-uts-ipc/steps/look-first/check`, {
        headers: origin,
        data: { answer: '1' },
      });
      await until(
        async () => (await page.textContent(cellSel))?.trim() === '2',
        'the second attempt on the open page',
      );
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(ARTIFACTS, 'instructor-dark.png') });

      // Where checks fail: look-first's message, twice, one student.
      const failing = page.locator('[data-testid="failing"] li[data-step="ns-uts-ipc/look-first"]');
      await failing.first().waitFor();
      assert.match((await failing.first().textContent()) ?? '', /×2, 1 student/);

      // Ann up close: her two failed checks, her running lab; the instructor ends it.
      await page.getByRole('button', { name: 'Ann <i>x</i>' }).click();
      const panel = page.locator('[data-testid="student-panel"]');
      await panel.locator('tr[data-kind="check-fail"]').nth(1).waitFor();
      assert.match(
        (await panel.textContent()) ?? '',
        /1 is not the inode of your shell's UTS namespace/,
      );
      await page.screenshot({
        path: path.join(ARTIFACTS, 'instructor-student.png'),
        fullPage: true,
      });
      const keyed = (await (
        await inst.request.get(`${srv.url}/api/instructor/cohorts/${name}`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { students: { key: string }[] };
      const endUrl = `${srv.url}/api/instructor/cohorts/${name}/students/${keyed.students[0]?.key}/labs/ns-uts-ipc/end`;
      assert.equal(
        (await req.post(endUrl, { headers: origin })).status(),
        403,
        'a student cannot end sessions',
      );
      page.once('dialog', (d) => void d.accept());
      await panel.getByRole('button', { name: 'End session' }).click();
      await panel.getByText('No lab sandbox running.').waitFor();
      const after = (await (await req.get(`${srv.url}/api/labs`)).json()) as unknown;
      assert.ok(after, 'the student can still list labs');
      await page.getByRole('button', { name: 'Ann <i>x</i>' }).click(); // closes the panel

      // Stuck: with the threshold at 1 ms of a minute, Ann's step is marked.
      const strict = await inst.newPage();
      await strict.goto(instructorLink.replace('?cohort=', '?stuck=0.00002&cohort='));
      await strict.waitForSelector(`${cellSel}[data-current="stuck"]`);
      await strict.screenshot({ path: path.join(ARTIFACTS, 'instructor-stuck.png') });
      assert.match((await strict.getAttribute(cellSel, 'title')) ?? '', /on this step for 0 min/);
      await strict.close();

      // The gradebook export from the page: Ann's two checks on look-first.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Export CSV' }).click(),
      ]);
      const file = path.join(ARTIFACTS, `${name}-progress.csv`);
      await download.saveAs(file);
      const csv = fs.readFileSync(file, 'utf8');
      assert.match(
        csv,
        new RegExp(
          `^${name},Ann <i>x</i>,[^,]+,ns-uts-ipc,look-first,false,false,2,0,,[0-9a-f]{16}\r$`,
          'm',
        ),
      );
      assert.equal(csv.trimEnd().split('\r\n').length, 1 + 7, 'a header and one row per step');
      assert.equal(
        (await req.get(`${srv.url}/api/instructor/cohorts/${name}/export`)).status(),
        403,
      );

      // No token, a wrong one, or a student's cookie: refused, and the page says so.
      const api = `${srv.url}/api/instructor/cohorts/${name}`;
      assert.equal((await req.get(api)).status(), 403);
      assert.equal(
        (await req.get(api, { headers: { authorization: `Bearer ${token.slice(1)}` } })).status(),
        403,
      );
      assert.equal(
        (
          await req.get(`${srv.url}/api/instructor/cohorts/nope`, {
            headers: { authorization: `Bearer ${token}` },
          })
        ).status(),
        403,
      );
      const stranger = await (await browser.newContext()).newPage();
      await stranger.goto(instructorLink.replace(/#.*/, ''));
      await stranger.locator('.result[role="alert"]').waitFor();
      assert.match(
        (await stranger.locator('.result[role="alert"]').textContent()) ?? '',
        /not the instructor link/,
      );
      await req.delete(`${srv.url}/api/labs/ns-uts-ipc/session`, { headers: origin });
      await ann.close();
      await inst.close();
    },
  );

  sysTest(
    'a class: two students work, the instructor watches one type live and read-only, sends a notice, reads near misses and step figures, exports',
    SYSTEM_NEEDS,
    async () => {
      const { server: srv, browser } = suite.ready();
      const name = `class-${Date.now().toString(36)}`;
      const made = await cli([
        'cohort',
        'create',
        name,
        '--labs',
        'uts-hostname,cap-setcap-ping',
        '--url',
        srv.url,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const link = /students join at\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const instructorLink = /instructor\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const errors: string[] = [];

      /** A student joins through the page, in a browser context of their own. */
      const join = async (who: string) => {
        const ctx = await browser.newContext({ viewport: { width: 1300, height: 800 } });
        const page = await ctx.newPage();
        page.on('pageerror', (e) => errors.push(`${who}: ${String(e)}`));
        await page.goto(link);
        const codeBox = page.getByLabel('Class code');
        await until(async () => (await codeBox.inputValue()) !== '', 'the code from the link');
        await page.getByLabel('Your name, as your instructor will see it').fill(who);
        await page.getByRole('button', { name: 'Join' }).click();
        await page.getByText(`You are in: ${name}`).waitFor();
        return { ctx, page };
      };
      const ann = await join('Ann');
      const bo = await join('Bo');

      // Ann works in uts-hostname in her browser: Run the T2 block, Check: pass.
      const T = (t: string) => `[data-terminal-name="${t}"]`;
      await ann.page.goto(`${srv.url}/labs/uts-hostname`);
      await waitForScreen(ann.page, /root@lab:~#/, 20_000, T('T1'));
      await ann.page.getByRole('button', { name: 'Run in T2' }).click();
      await waitForScreen(ann.page, /^lab-box\s*$/m, 15_000, T('T2'));
      await ann.page.getByRole('button', { name: 'Check', exact: true }).click();
      await ann.page.waitForSelector('[data-testid="check-result"].pass');

      // Bo, in cap-setcap-ping, answers with the near miss (twice), then right.
      await bo.page.goto(`${srv.url}/labs/cap-setcap-ping`);
      await waitForScreen(bo.page, /root@lab:~#/, 20_000, T('T1'));
      const answer = bo.page.getByLabel('The capability /usr/bin/ping carries').first();
      const xss = `<img src=x onerror="document.title='pwned'">`;
      for (const a of ['cap_net_admin', 'CAP_NET_ADMIN', xss, 'cap_net_raw']) {
        await answer.fill(a);
        await bo.page.getByRole('button', { name: 'Check', exact: true }).click();
        await bo.page.waitForSelector(
          `[data-testid="check-result"].${a === 'cap_net_raw' ? 'pass' : 'fail'}`,
        );
        if (a !== 'cap_net_raw')
          assert.match(
            (await bo.page.textContent('[data-testid="check-result"]')) ?? '',
            /is not it: read the output of getcap/,
          );
      }

      // The instructor's page: both students; Ann passed private-hostname.
      const inst = await browser.newContext({ viewport: { width: 1300, height: 900 } });
      const page = await inst.newPage();
      page.on('pageerror', (e) => errors.push(`instructor: ${String(e)}`));
      await page.goto(instructorLink);
      const annCell = `tr[data-student="Ann"] td[data-step="uts-hostname/private-hostname"]`;
      await page.waitForSelector(annCell);
      await until(
        async () => (await page.textContent(annCell))?.trim() === '✓',
        "Ann's pass on the dashboard",
      );
      assert.equal(
        (
          await page.textContent(`tr[data-student="Bo"] td[data-step="cap-setcap-ping/real-ping"]`)
        )?.trim(),
        '✓',
      );
      // Bo's failures are labelled with the near miss they match.
      const failing = page.locator(
        '[data-testid="failing"] li[data-step="cap-setcap-ping/real-ping"]',
      );
      await failing.first().waitFor();
      const labels = await page
        .locator(
          '[data-testid="failing"] li[data-step="cap-setcap-ping/real-ping"] [data-testid="near-miss"]',
        )
        .allTextContents();
      assert.deepEqual(
        labels,
        [
          'near miss: the capability for network configuration',
          'near miss: the capability for network configuration',
        ],
        'both spellings of the mistake are the same near miss; the third answer is none',
      );
      // What a student typed, echoed by a check, is text on the dashboard.
      assert.match((await failing.allTextContents()).join('\n'), /<img src=x onerror=/);
      assert.equal(await page.locator('[data-testid="failing"] img').count(), 0);
      assert.notEqual(await page.title(), 'pwned');
      // Step figures: private-hostname 1/1, real-ping 1/1 with 3 checks per pass.
      const row = (lab: string, step: string) =>
        page.locator(`[data-testid="analytics"] tr[data-step="${lab}/${step}"]`);
      assert.match(
        (await row('uts-hostname', 'private-hostname').textContent()) ?? '',
        /1\/1 \(100 %\)/,
      );
      assert.match(
        (await row('cap-setcap-ping', 'real-ping').textContent()) ?? '',
        /1\/1 \(100 %\).*4/,
      );

      // Watching Ann: her T2 as it is, then what she types, live.
      await page.getByRole('button', { name: 'Ann', exact: true }).click();
      const panel = page.locator('[data-testid="student-panel"]');
      await panel.getByRole('button', { name: 'Watch terminals' }).click();
      const view = '[data-testid="watch"] [data-term="T2"]';
      // In view, as an instructor would look at it (xterm does not draw a terminal scrolled away).
      await page.locator('[data-testid="watch"]').getByRole('tab', { name: 'T2' }).click();
      await page.locator(view).scrollIntoViewIfNeeded();
      await waitForScreen(page, /^lab-box\s*$/m, 15_000, view);
      await ann.page.getByText('Your instructor is watching your terminals (read-only)').waitFor();
      await ann.page.locator(`${T('T2')} [data-testid="xterm"]`).click();
      await ann.page.keyboard.type('echo watched-$((7*6))\n');
      await waitForScreen(page, /^watched-42\s*$/m, 15_000, view);
      // The instructor types into the view: nothing reaches Ann's shell.
      await page.locator(`${view} [data-testid="xterm"]`).click();
      await page.keyboard.type('echo intruder-$((1+1))\n');
      await ann.page.keyboard.type('echo after-$((2+2))\n');
      await waitForScreen(page, /^after-4\s*$/m, 15_000, view);
      const annScreen = await screenText(ann.page, T('T2'));
      assert.doesNotMatch(annScreen, /intruder/, "the instructor's keys never reached Ann's shell");
      assert.doesNotMatch(await screenText(page, view), /intruder/);
      await page.screenshot({ path: path.join(ARTIFACTS, 'instructor-watch.png'), fullPage: true });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({
        path: path.join(ARTIFACTS, 'instructor-watch-dark.png'),
        fullPage: true,
      });
      await page.emulateMedia({ colorScheme: 'light' });
      await panel.getByRole('button', { name: 'Stop watching' }).click();
      await until(
        async () => (await ann.page.getByTestId('watched').count()) === 0,
        'Ann told nobody watches',
      );

      // A notice, with markup in it: on Ann's open lab page at once, as text.
      await page.getByLabel('Notice to the class').fill('Break <b>until</b> 11:00');
      await page.getByRole('button', { name: 'Send' }).click();
      await page.getByText(/Sent at .*: Break <b>until<\/b> 11:00/).waitFor();
      const notice = ann.page.getByTestId('class-notice');
      await notice.waitFor();
      assert.match(
        (await notice.textContent()) ?? '',
        /From your instructor .*Break <b>until<\/b> 11:00/,
      );
      assert.equal(await ann.page.locator('[data-testid="class-notice"] b').count(), 0);
      await ann.page.screenshot({ path: path.join(ARTIFACTS, 'student-notice.png') });
      // Bo opens a lab after it was sent: he sees it too (from /api/me).
      await bo.page.reload();
      await bo.page.getByTestId('class-notice').waitFor();

      // The export matches what they did.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('button', { name: 'Export CSV', exact: true }).click(),
      ]);
      const file = path.join(ARTIFACTS, `${name}-progress.csv`);
      await download.saveAs(file);
      const csv = fs.readFileSync(file, 'utf8');
      assert.match(
        csv,
        new RegExp(`^${name},Ann,[^,]+,uts-hostname,private-hostname,true,false,1,0,\\d{4}-`, 'm'),
      );
      assert.match(
        csv,
        new RegExp(`^${name},Bo,[^,]+,cap-setcap-ping,real-ping,true,false,4,0,\\d{4}-`, 'm'),
      );
      assert.match(
        csv,
        new RegExp(
          `^${name},Bo,[^,]+,uts-hostname,private-hostname,false,false,0,0,,[0-9a-f]{16}\r$`,
          'm',
        ),
      );

      // A student cannot open the dashboard, even knowing the cohort's name.
      await ann.page.goto(`${srv.url}/instructor?cohort=${name}`);
      await ann.page.locator('.result[role="alert"]').waitFor();
      assert.match(
        (await ann.page.locator('.result[role="alert"]').textContent()) ?? '',
        /not the instructor link/,
      );

      assert.deepEqual(errors, []);
      for (const [c, lab] of [
        [ann.ctx, 'uts-hostname'],
        [bo.ctx, 'cap-setcap-ping'],
      ] as const)
        await c.request.delete(`${srv.url}/api/labs/${lab}/session`, {
          headers: { origin: srv.url },
        });
      await ann.ctx.close();
      await bo.ctx.close();
      await inst.close();
    },
  );
});

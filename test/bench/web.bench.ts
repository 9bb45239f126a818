/**
 * Browser figures (npm run bench:web): catalog first load, and click on a
 * lab card -> shell prompt visible in T1, in headless Chromium against a
 * production build. Each run is a new student (fresh browser context, so a
 * new cookie and a new sandbox). Prints a table for docs/benchmarks.md.
 */
import { launchBrowser, startServer, type Server } from '../helpers/browser';

// Evaluated in the page (a string: this file is compiled without the DOM types).
const PROMPT_VISIBLE = `[...document.querySelectorAll('[data-terminal-name="T1"] .xterm-rows')].some((r) => /root@lab/.test(r.textContent || ''))`;
const RUNS = Number(process.env.RUNS ?? 12);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
const row = (name: string, xs: number[]) =>
  `| ${name} | ${pct(xs, 50).toFixed(0)} | ${pct(xs, 95).toFixed(0)} | ${Math.min(...xs).toFixed(0)} | ${xs.length} |`;

async function main(): Promise<void> {
  const server: Server = await startServer();
  const browser = await launchBrowser();
  const catalogCold: number[] = [];
  const catalogWarm: number[] = [];
  const toPrompt: number[] = [];
  const toSession: number[] = [];
  const serverStart: number[] = [];
  const reloadPrompt: number[] = [];
  try {
    // One warm-up run (Next compiles nothing in production, but the first render warms caches).
    for (let i = 0; i <= RUNS; i++) {
      const ctx = await browser.newContext({ viewport: { width: 1400, height: 860 } });
      const page = await ctx.newPage();
      let t0 = performance.now();
      await page.goto(server.url);
      await page.waitForSelector('.card');
      const cold = performance.now() - t0;
      t0 = performance.now();
      await page.goto(server.url);
      await page.waitForSelector('.card');
      const warm = performance.now() - t0;

      // A student looks at the catalog before clicking; idle-time prefetches finish meanwhile.
      await page.waitForTimeout(1000);
      const sessionResp = page.waitForResponse((r) => r.url().endsWith('/session'));
      t0 = performance.now();
      await page.click('[data-testid="lab-ns-uts-ipc"]');
      const resp = await sessionResp;
      const tSession = performance.now() - t0;
      const body = (await resp.json()) as { startMs: number };
      await page.waitForFunction(PROMPT_VISIBLE, null, { timeout: 20_000, polling: 'raf' });
      const tPrompt = performance.now() - t0;
      t0 = performance.now();
      await page.reload();
      await page.waitForFunction(PROMPT_VISIBLE, null, { timeout: 20_000, polling: 'raf' });
      const tReload = performance.now() - t0;
      await ctx.request.delete(`${server.url}/api/labs/ns-uts-ipc/session`, {
        headers: { origin: server.url },
      });
      await ctx.close();
      if (i === 0) continue;
      catalogCold.push(cold);
      catalogWarm.push(warm);
      toSession.push(tSession);
      toPrompt.push(tPrompt);
      serverStart.push(body.startMs);
      reloadPrompt.push(tReload);
    }
  } finally {
    await browser.close();
    await server.stop();
  }
  console.log('| measure (ms) | p50 | p95 | min | runs |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(row('catalog first load (new browser context) -> cards visible', catalogCold));
  console.log(row('catalog load again (cached assets)', catalogWarm));
  console.log(row('click lab card -> session answered', toSession));
  console.log(row('  of which: sandbox start + lab setup on the server', serverStart));
  console.log(row('click lab card -> prompt visible in T1', toPrompt));
  console.log(row('reload lab page -> prompt visible again (replayed)', reloadPrompt));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

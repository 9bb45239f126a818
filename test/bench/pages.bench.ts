/**
 * Keystroke echo while pages are being rendered (npm run bench:pages): one
 * student's terminal echoes a key every 20 ms while LOADERS clients fetch
 * the lab page (server-side rendered) as fast as it comes back, as a class
 * reloading pages does. Printed: echo p50/p99/max idle and under the page
 * load, and the page time. The web app renders in its own process
 * (server/cli/web-process.ts); before, rendering ran on the event loop that
 * relays keystrokes. Environment: LOADERS (4), SECS (8), ROOT (another
 * checkout's root, to measure a build side by side).
 */
import * as path from 'node:path';
import { io } from 'socket.io-client';
import type { LabSession } from '../../server/protocol/index';

const ROOT = process.env.ROOT ?? path.resolve(__dirname, '..', '..', '..');
// A checkout given by ROOT is measured with its own server and helpers.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startServer } = require(
  path.join(ROOT, 'dist', 'test', 'helpers', 'browser'),
) as typeof import('../helpers/browser');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { CookieClient } = require(
  path.join(ROOT, 'dist', 'test', 'helpers', 'browser-like'),
) as typeof import('../helpers/browser-like');

const LOADERS = Number(process.env.LOADERS ?? 4);
const SECS = Number(process.env.SECS ?? 8);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

async function main(): Promise<void> {
  const s = await startServer(undefined, {
    UNDERLAY_STATE_DIR: process.env.UNDERLAY_BENCH_STATE_DIR ?? '/var/lib/underlay-bench',
    UNDERLAY_UID_BASE: String(100000 + 65536 * 3000),
    UNDERLAY_LOG: 'warn',
  });
  const student = new CookieClient(s.url);
  const ls = (await student.ok('POST', '/api/labs/ns-uts-ipc/session')) as unknown as LabSession;
  const sock = io(s.url, {
    transports: ['websocket'],
    auth: { v: 1, session: ls.session, token: ls.token },
  });
  try {
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const term = ls.terminals[0]?.term as string;
    let waiting: { ch: string; done: () => void } | undefined;
    sock.on('term:output', (m: { data: ArrayBuffer }) => {
      if (waiting && Buffer.from(m.data).toString('latin1').includes(waiting.ch)) waiting.done();
    });
    await new Promise((r) => sock.emit('term:open', { term, cols: 80, rows: 24 }, r));
    await new Promise((r) => setTimeout(r, 1000));

    const run = async (loaders: number) => {
      let stop = false;
      const pages: number[] = [];
      const echo: number[] = [];
      const load = [...Array(loaders)].map(async () => {
        while (!stop) {
          const t = performance.now();
          await (await fetch(`${s.url}/labs/ns-uts-ipc`)).text();
          pages.push(performance.now() - t);
        }
      });
      const end = Date.now() + SECS * 1000;
      while (Date.now() < end) {
        const t = performance.now();
        await new Promise<void>((done) => {
          waiting = { ch: 'x', done };
          sock.emit('term:input', { term, data: 'x' });
        });
        echo.push(performance.now() - t);
        waiting = undefined;
        sock.emit('term:input', { term, data: '\x7f' });
        await new Promise((r) => setTimeout(r, 20));
      }
      stop = true;
      await Promise.all(load);
      return (
        `| ${loaders} | ${pct(echo, 50).toFixed(2)} / ${pct(echo, 99).toFixed(1)} / ` +
        `${Math.max(...echo).toFixed(0)} | ${loaders ? `${pct(pages, 50).toFixed(0)} (${pages.length})` : '-'} |`
      );
    };
    console.log(`bench:pages (${ROOT})\n`);
    console.log('| page loaders | echo p50 / p99 / max ms | page p50 ms (pages) |');
    console.log('| ---: | ---: | ---: |');
    console.log(await run(0));
    console.log(await run(LOADERS));
  } finally {
    sock.close();
    await student.call('DELETE', '/api/labs/ns-uts-ipc/session').catch(() => {});
    await s.stop();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

/**
 * The web app runs in a process of its own behind the server's port
 * (server/cli/web-process.ts): pages and the 404 of an unknown lab come
 * through it, a client cannot forge the server's not-found header, the API
 * answers while the web process is down, and a web process that dies is
 * started again.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe } from 'node:test';
import { timeScale } from '../../server/config';
import { serverSuite } from '../helpers/browser';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Children of `pid` whose command line mentions `what`. */
function childrenOf(pid: number, what: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== pid) continue;
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(what)) out.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('the web app process', () => {
  const server = serverSuite(before, after);

  sysTest(
    'pages come through it; a forged header does nothing; it is restarted',
    SYSTEM_NEEDS,
    async () => {
      const s = server();
      const home = await fetch(`${s.url}/`);
      assert.equal(home.status, 200);
      assert.match(await home.text(), /<html/);
      assert.ok(home.headers.get('set-cookie'), 'the student cookie comes with the first page');

      const unknown = await fetch(`${s.url}/labs/no-such-lab`);
      assert.equal(unknown.status, 404, 'an unknown lab is a 404');
      assert.match(await unknown.text(), /<html/, "...with the app's page");

      const forged = await fetch(`${s.url}/`, { headers: { 'x-underlay-not-found': '1' } });
      assert.equal(forged.status, 200, "a client's copy of the server's header is dropped");

      const pid = s.proc.pid as number;
      const [web, ...more] = childrenOf(pid, 'web-child');
      assert.ok(web, 'the server has one web process');
      assert.deepEqual(more, []);

      process.kill(web, 'SIGKILL');
      // While it is gone the API still answers; pages say why they do not.
      let sawDown = false;
      const end = Date.now() + 60_000 * timeScale();
      for (;;) {
        assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
        const r = await fetch(`${s.url}/`);
        if (r.status === 503) {
          sawDown = true;
          assert.match(await r.text(), /starting again/);
        } else if (r.status === 200 && childrenOf(pid, 'web-child')[0] !== web) break;
        else await r.arrayBuffer();
        assert.ok(Date.now() < end, `no page after the web process was killed: ${r.status}`);
        await sleep(50);
      }
      assert.ok(sawDown, 'pages answered 503 while it was down');
      const [again] = childrenOf(pid, 'web-child');
      assert.ok(again && again !== web, 'a new web process');
    },
  );
});

/**
 * Admission control and request rules over real HTTP against `underlay
 * serve` (the pure rules are in test/unit/admission.test.ts): signed student
 * ids, a full host answering with a place in line, per-student room-making,
 * rate limits, bare sessions off, Origin/Host rules, connection caps and
 * slow-header timeouts.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe } from 'node:test';
import { io } from 'socket.io-client';
import { serverSuite } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** A browser-like student (cookie jar, same-origin Origin). */
class Student extends CookieClient {
  start(lab: string) {
    return this.call('POST', `/api/labs/${lab}/session`);
  }
}

describe('admission control over HTTP', () => {
  const server = serverSuite(before, after, {
    UNDERLAY_CAPACITY: '2',
    UNDERLAY_PER_STUDENT: '1',
    UNDERLAY_RATES: 'check=3/1',
    UNDERLAY_CONNECTIONS_PER_CLIENT: '40',
    UNDERLAY_BARE_SESSIONS: '0',
  });

  sysTest(
    'ids are signed, one student makes room for itself, a full host gives places in line, checks are rate-limited',
    SYSTEM_NEEDS,
    async () => {
      const { url } = server();
      const a = new Student(url);
      const first = await a.start('uts-hostname');
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.match(a.cookie, /^underlay_student=[\w-]+\.[\w-]{22}$/);

      // Another client presents A's id without A's signature: it is not A.
      const id = a.cookie.split('=')[1]?.split('.')[0] as string;
      for (const forged of [`underlay_student=${id}`, `underlay_student=${id}.${'A'.repeat(22)}`]) {
        const mallory = new Student(url);
        mallory.cookie = forged;
        const m = await mallory.start('uts-hostname');
        assert.equal(m.status, 200, JSON.stringify(m.body));
        assert.notEqual(m.body.session, first.body.session, `${forged} got A's sandbox`);
        assert.notEqual(mallory.cookie, forged, 'a new signed id replaces the forged one');
        await mallory.call('DELETE', '/api/labs/uts-hostname/session');
      }

      // At most one lab each: starting another ends A's idle first lab, which says so later.
      const second = await a.start('ns-uts-ipc');
      assert.equal(second.status, 200, JSON.stringify(second.body));
      const again = await a.start('uts-hostname');
      assert.equal(again.status, 200);
      assert.notEqual(again.body.session, first.body.session);
      assert.match(
        String(again.body.notice),
        /stopped when you started .*Your files and progress are back/,
      );

      // With a tab attached, the lab is not taken away: the start is refused instead.
      const sock = io(url, {
        transports: ['websocket'],
        auth: { v: 1, session: again.body.session, token: again.body.token },
        reconnection: false,
      });
      await new Promise<void>((res, rej) => {
        sock.on('connect', res);
        sock.on('connect_error', rej);
      });
      const busy = await a.start('ns-uts-ipc');
      assert.equal(busy.status, 429, JSON.stringify(busy.body));
      assert.match(
        String(busy.body.error),
        /You already have 1 lab running \(A private hostname: your first namespace\)/,
      );

      // Checks: 3 at once, then 429 with Retry-After.
      for (let i = 0; i < 3; i++)
        assert.equal(
          (await a.call('POST', '/api/labs/uts-hostname/steps/private-hostname/check', {})).status,
          200,
        );
      const limited = await a.call(
        'POST',
        '/api/labs/uts-hostname/steps/private-hostname/check',
        {},
      );
      assert.equal(limited.status, 429);
      assert.ok(Number(limited.headers.get('retry-after')) >= 1);
      assert.match(String(limited.body.error), /Too many checks/);

      // Capacity 2: B fills it; C and D wait in line, in order; places go in line order.
      const b = new Student(url);
      assert.equal((await b.start('uts-hostname')).status, 200);
      const c = new Student(url);
      const d = new Student(url);
      const c1 = await c.start('uts-hostname');
      assert.equal(c1.status, 503);
      assert.deepEqual(c1.body.queue, { position: 1 });
      assert.match(String(c1.body.error), /The lab host is full: you are 1st in line/);
      assert.ok(Number(c1.headers.get('retry-after')) >= 1);
      assert.deepEqual((await d.start('uts-hostname')).body.queue, { position: 2 });
      assert.deepEqual((await c.start('uts-hostname')).body.queue, { position: 1 });
      const health = (await (await fetch(`${url}/healthz`)).json()) as Record<string, unknown>;
      assert.equal(health.capacity, 2);
      assert.equal(health.waiting, 2);
      assert.equal((await b.call('DELETE', '/api/labs/uts-hostname/session')).status, 200);
      assert.deepEqual((await d.start('uts-hostname')).body.queue, { position: 2 }, 'no jumping');
      assert.equal((await c.start('uts-hostname')).status, 200);
      assert.deepEqual((await d.start('uts-hostname')).body.queue, { position: 1 });

      sock.close();
      for (const s of [a, c]) await s.call('DELETE', '/api/labs/uts-hostname/session');
    },
    { timeout: 120_000 },
  );

  sysTest(
    "one student's simultaneous starts of several labs stay within the per-student limit",
    SYSTEM_NEEDS,
    async () => {
      const { url } = server();
      const live = async () =>
        ((await (await fetch(`${url}/healthz`)).json()) as { sessions: number }).sessions;
      const before = await live();
      const z = new Student(url);
      await z.call('GET', '/api/labs'); // the id first, as a page load would
      const labs = ['uts-hostname', 'ns-uts-ipc', 'ns-pid'];
      const answers = await Promise.all(labs.map((l) => z.start(l)));
      assert.ok(
        answers.some((r) => r.status === 200),
        JSON.stringify(answers.map((r) => r.body)),
      );
      assert.ok((await live()) - before <= 1, `${(await live()) - before} live for one student`);
      for (const l of labs) await z.call('DELETE', `/api/labs/${l}/session`);
    },
    { timeout: 60_000 },
  );

  sysTest(
    'request rules: bare sessions off, Origin or client header, Host allow-list',
    SYSTEM_NEEDS,
    async () => {
      const { url, port } = server();
      const bare = await fetch(`${url}/api/sessions`, {
        method: 'POST',
        headers: { 'x-underlay-client': 'test' },
      });
      assert.equal(bare.status, 404);
      assert.match(((await bare.json()) as { error: string }).error, /bare sessions are off/);
      // No Origin and no client header: refused (a cross-site form post in an old browser).
      const anon = await fetch(`${url}/api/labs/uts-hostname/session`, { method: 'POST' });
      assert.equal(anon.status, 403);
      assert.match(((await anon.json()) as { error: string }).error, /x-underlay-client/);
      // Another site's <img> makes the browser ask without a cookie: no id is minted for it.
      const drain = await fetch(`${url}/api/labs`, {
        headers: {
          'sec-fetch-site': 'cross-site',
          'sec-fetch-mode': 'no-cors',
          'sec-fetch-dest': 'image',
        },
      });
      assert.equal(drain.status, 403);
      assert.equal(drain.headers.get('set-cookie'), null);
      const cli = await fetch(`${url}/api/labs/uts-hostname/session`, {
        method: 'DELETE',
        headers: { 'x-underlay-client': 'test' },
      });
      assert.equal(cli.status, 200);
      // DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example.
      const rebound = await rawRequest(
        port,
        'GET /api/labs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n',
      );
      assert.match(rebound, /^HTTP\/1\.1 421 /);
      assert.match(rebound, /UNDERLAY_ALLOWED_HOSTS/);
      const ws = await rawRequest(
        port,
        'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: evil.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
      );
      assert.doesNotMatch(ws, /^HTTP\/1\.1 101 /);
      // A request target node accepts but no URL parser does: a 400 that says so, not a 500.
      for (const target of ['http://[', '//x:abc/', 'http://a:b'])
        assert.match(
          await rawRequest(
            port,
            `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
          ),
          /^HTTP\/1\.1 400 [^]*not a URL path/,
          target,
        );
    },
    { timeout: 60_000 },
  );

  sysTest(
    'connections: capped per client; a client that never finishes its headers is dropped',
    SYSTEM_NEEDS,
    async () => {
      const { port, url } = server();
      const held: net.Socket[] = [];
      for (let i = 0; i < 40; i++) {
        const s = net.connect(port, '127.0.0.1');
        await new Promise((r) => s.once('connect', r));
        held.push(s);
      }
      const over = await rawRequest(
        port,
        'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n',
      );
      assert.match(over, /^HTTP\/1\.1 503 /);
      assert.match(over, /too many connections from your address/);
      for (const s of held) s.destroy();
      // Capacity comes back as they close.
      for (let i = 0; ; i++) {
        const ok = await fetch(`${url}/healthz`).then(
          (r) => r.status,
          () => 0,
        );
        if (ok === 200) break;
        assert.ok(i < 200, 'connections freed');
        await new Promise((r) => setTimeout(r, 50));
      }
      // Slowloris: half a request line, then silence: the server closes it (headers timeout).
      const slow = net.connect(port, '127.0.0.1');
      await new Promise((r) => slow.once('connect', r));
      slow.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
      const closedBy = await new Promise<string>((r) => {
        let got = '';
        slow.on('data', (b) => (got += b.toString()));
        slow.on('close', () => r(got));
      });
      assert.match(closedBy, /^$|^HTTP\/1\.1 408 /);
    },
    { timeout: 90_000 },
  );
});

describe('start rates: a refused reset ends nothing; bare sessions are rate-limited too', () => {
  const server = serverSuite(before, after, {
    UNDERLAY_RATES: 'start=1/1',
    UNDERLAY_BARE_SESSIONS: '1',
  });

  sysTest(
    'a reset over the start rate is refused before the sandbox or the progress is touched',
    SYSTEM_NEEDS,
    async () => {
      const srv = server();
      const s = new Student(srv.url);
      const first = await s.start('uts-hostname');
      assert.equal(first.status, 200, JSON.stringify(first.body));
      await s.call('POST', '/api/labs/uts-hostname/steps/private-hostname/skip');
      const reset = await s.call('POST', '/api/labs/uts-hostname/reset');
      assert.equal(reset.status, 429, JSON.stringify(reset.body));
      const again = await s.start('uts-hostname');
      assert.equal(again.body.session, first.body.session, 'the same sandbox still runs');
      const view = await s.call('GET', '/api/labs/uts-hostname');
      const progress = view.body.progress as { steps: Record<string, { skipped: boolean }> };
      assert.equal(progress.steps['private-hostname']?.skipped, true, 'progress kept');
      await s.call('DELETE', '/api/labs/uts-hostname/session');
    },
    { timeout: 60_000 },
  );

  sysTest(
    'bare sessions share the start rate (one address made 585 in 20 s)',
    SYSTEM_NEEDS,
    async () => {
      const srv = server();
      const headers = { 'x-underlay-client': 'admission.test' };
      const made: { session: string; token: string }[] = [];
      let refused: Response | undefined;
      for (let i = 0; i < 3 && !refused; i++) {
        const r = await fetch(`${srv.url}/api/sessions`, { method: 'POST', headers });
        if (r.status === 201) made.push((await r.json()) as { session: string; token: string });
        else refused = r;
      }
      assert.equal(refused?.status, 429);
      assert.ok(made.length <= 1, `${made.length} bare sessions at a rate of 1`);
      for (const m of made)
        await fetch(`${srv.url}/api/sessions/${m.session}`, {
          method: 'DELETE',
          headers: { ...headers, authorization: `Bearer ${m.token}` },
        });
    },
  );
});

/** A request on a fresh connection (send Connection: close); everything the server sent before closing. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (b) => (got += b.toString()));
    s.on('error', reject);
    s.on('close', () => resolve(got));
    s.write(text);
  });
}

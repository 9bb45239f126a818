/**
 * The web app's proxy (server/cli/web-process.ts): a kept-alive socket to
 * the web process that it closed just as the proxy reused it must not fail
 * the page's request. (Seen in CI: a page's script chunk answered 502 with
 * "write EPIPE", and the page never started.)
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { WebProcess } from '../../server/cli/web-process';
import { createLogger } from '../../server/util/logger';

test('a GET whose kept-alive socket the web process closed is sent again on a new one', async () => {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-proxy-'));
  const web = new WebProcess({
    dir: runDir,
    runDir,
    dev: false,
    host: '127.0.0.1',
    port: 0,
    log: createLogger('error'),
  });
  (web as unknown as { ready: boolean }).ready = true; // no child: a stand-in listens below
  // The stand-in web process answers the first request on each socket and
  // closes the socket when a second one arrives on it (a keep-alive timeout
  // that fired as the proxy reused the socket).
  const served = new WeakMap<object, number>();
  let requests = 0;
  const upstream = http.createServer((req, res) => {
    requests++;
    const n = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, n);
    if (n > 1) return void req.socket.destroy();
    res.end(`page ${req.url}`);
  });
  await new Promise<void>((r) => upstream.listen(web.socketPath, r));
  const front = http.createServer((req, res) => web.handle(req, res));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  try {
    const a = await fetch(`${url}/one`);
    assert.equal(a.status, 200);
    assert.equal(await a.text(), 'page /one');
    const b = await fetch(`${url}/two`);
    assert.equal(b.status, 200, 'the reused socket was closed: sent again, not a 502');
    assert.equal(await b.text(), 'page /two');
    assert.equal(requests, 3, 'the second request was sent twice');
    // A POST is not sent again (its body is gone): a 502, as before.
    const c = await fetch(`${url}/three`, { method: 'POST', body: 'x' });
    assert.equal(c.status, 502);
  } finally {
    front.close();
    upstream.close();
    fs.rmSync(runDir, { recursive: true, force: true });
  }
});

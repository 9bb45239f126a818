/**
 * In the VM tier's guest: `underlay serve`, started by systemd from
 * scripts/underlay.service, used as a student's browser would over HTTP and
 * socket.io - the page, the lab list, a lab session, a shell that runs in
 * the sandbox under the service's delegated cgroup v2 subtree, a failing and
 * a passing Check, the end of the session.
 *
 *   node dist/test/vm/smoke.js [URL]   (default http://127.0.0.1:3000)
 *
 * Prints TAP; the exit status is non-zero on any failure.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { test } from 'node:test';
import type { CheckResponse, LabSession } from '../../server/protocol/index';
import { CookieClient } from '../helpers/browser-like';
import { TermClient } from '../helpers/term-client';

const URL = process.argv[2] ?? 'http://127.0.0.1:3000';
const LAB = 'uts-hostname';

async function healthy(ms: number): Promise<void> {
  const end = Date.now() + ms;
  let last = '';
  for (;;) {
    try {
      const r = await fetch(`${URL}/healthz`);
      if (r.ok) return;
      last = `HTTP ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > end) throw new Error(`${URL}/healthz never answered 200 (last: ${last})`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('underlay serve under systemd: page, labs, a lab session, a shell, Check, end', async () => {
  // Started at boot; on an emulated CPU the first start takes a while.
  await healthy(180_000);
  const page = await fetch(URL);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /Underlay/);

  const student = new CookieClient(URL);
  const labs = (await student.ok('GET', '/api/labs')) as { labs?: { id: string }[] };
  // The catalog lists the path's labs; the format's example (LAB) is unlisted but served.
  assert.ok(
    labs.labs?.some((l) => l.id === 'ns-uts-ipc'),
    `GET /api/labs lists ns-uts-ipc: ${JSON.stringify(labs).slice(0, 300)}`,
  );
  const view = (await student.ok('GET', `/api/labs/${LAB}`)) as { id?: string };
  assert.equal(view.id, LAB, `GET /api/labs/${LAB} serves the unlisted example`);

  const s = (await student.ok('POST', `/api/labs/${LAB}/session`)) as unknown as LabSession;
  const first = s.terminals[0];
  assert.ok(first, 'the lab session has a terminal');
  const client = await TermClient.connect(
    URL,
    { session: s.session, token: s.token },
    { origin: URL },
  );
  try {
    const t = await client.open({ term: first.term });
    assert.ok(t.ok, JSON.stringify(t));
    await client.waitFor(t.term, /# $/, 60_000);
    const early = (await student.ok(
      'POST',
      `/api/labs/${LAB}/steps/private-hostname/check`,
      {},
    )) as unknown as CheckResponse;
    assert.equal(early.passed, false, early.message);

    const out = await client.run(t.term, 'hostname; cat /proc/self/cgroup; id -u', 60_000);
    const [hostname, cgroup, uid] = out.trim().split('\n');
    assert.equal(hostname, 'lab');
    assert.equal(uid, '0');
    // The cgroup namespace is rooted at the session: the shell sees /init/<its terminal's>.
    assert.match(cgroup ?? '', /^0::\/init(\/|$)/, 'the shell sees the session as its cgroup root');
    // On the guest's side, the sandbox lives under the service's delegated cgroup.
    const stat = fs.readFileSync(
      '/sys/fs/cgroup/system.slice/underlay.service/cgroup.stat',
      'utf8',
    );
    assert.ok(
      Number(/nr_descendants (\d+)/.exec(stat)?.[1]) > 0,
      `no cgroup below underlay.service: ${stat}`,
    );

    await client.input(t.term, 'unshare -u sh -c "hostname lab-box; exec sleep 600" &\r');
    // The check passes once the background namespace exists: ask until it does.
    let late: CheckResponse | undefined;
    for (const end = Date.now() + 60_000; !late?.passed && Date.now() < end; ) {
      if (late) await new Promise((r) => setTimeout(r, 1000)); // well inside the check rate
      late = (await student.ok(
        'POST',
        `/api/labs/${LAB}/steps/private-hostname/check`,
        {},
      )) as unknown as CheckResponse;
    }
    assert.equal(late?.passed, true, late?.message);
  } finally {
    client.close();
    await student.call('DELETE', `/api/labs/${LAB}/session`);
  }
});

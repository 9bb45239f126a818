/**
 * The classroom boundary on a real server (docs/classroom.md): an
 * instructor watches a student's terminal live and read-only (input,
 * resize, close and new terminals are refused, and nothing reaches the
 * shell), the student is told they are watched, and the watch socket is
 * refused without the cohort's instructor token; a notice reaches the
 * student's page; an instructor's reset forgets progress and ends the
 * sandbox.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { timeScale } from '../../server/config';
import type {
  InstructorStudent,
  InstructorView,
  LabList,
  LabSession,
  Me,
  ProtocolError,
} from '../../server/protocol/index';
import { startServer, type Server } from '../helpers/browser';
import { cli } from '../helpers/env';
import { SYSTEM_NEEDS, setupGuard, sysTest } from '../helpers/requires';
import { TermClient } from '../helpers/term-client';

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 20_000 * timeScale();
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Sends `n` socket.io CONNECT packets in one burst on one raw websocket and
 * counts the answers (what a client that skips socket.io-client can do).
 */
async function connectBurst(
  srv: Server,
  auth: Record<string, unknown>,
  n: number,
): Promise<{ connected: number; refused: number }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const WebSocket = require('ws') as typeof import('ws').WebSocket;
  const ws = new WebSocket(
    `${srv.url.replace('http', 'ws')}/socket.io/?EIO=4&transport=websocket`,
    {
      headers: { origin: srv.url },
    },
  );
  let connected = 0;
  let refused = 0;
  ws.on('message', (d: Buffer) => {
    const m = d.toString();
    if (m.startsWith('0')) {
      const raw = (ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
      raw.cork();
      for (let i = 0; i < n; i++) ws.send(`40${JSON.stringify(auth)}`);
      raw.uncork();
    } else if (m === '2') ws.send('3');
    else if (m.startsWith('40')) connected++;
    else if (m.startsWith('44')) refused++;
  });
  await until(() => connected + refused === n, `${n} answers to a burst of CONNECTs`);
  ws.close();
  await new Promise((r) => ws.once('close', r));
  return { connected, refused };
}

/** A browser-like HTTP client: keeps the student cookie, sends the page's Origin. */
function student(srv: Server) {
  let cookie = '';
  return async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${srv.url}${path}`, {
      method,
      headers: {
        origin: srv.url,
        ...(cookie ? { cookie } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const set = r.headers.get('set-cookie');
    if (set) cookie = set.split(';')[0] as string;
    const text = await r.text();
    return { status: r.status, body: text ? (JSON.parse(text) as unknown) : undefined };
  };
}

/**
 * A class made with the CLI (named PREFIX-<time>): its code, its
 * instructor token, and a caller of the instructor API below
 * /api/instructor/cohorts/NAME.
 */
async function makeClass(srv: Server, prefix: string, extra: string[] = []) {
  const name = `${prefix}-${Date.now().toString(36)}`;
  const made = await cli(['cohort', 'create', name, '--labs', 'uts-hostname', ...extra]);
  assert.equal(made.code, 0, made.stderr);
  const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
  const token = /#token=(\S+)/.exec(made.stdout)?.[1] as string;
  const inst = async (path: string, method = 'GET', body?: unknown) => {
    const r = await fetch(`${srv.url}/api/instructor/cohorts/${name}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        origin: srv.url,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: r.status, body: (await r.json()) as Record<string, unknown> };
  };
  return { name, code, token, inst };
}

describe('classroom: watching, notices, resets', () => {
  let srv: Server;
  const guard = setupGuard();
  before(async () => {
    try {
      srv = await startServer();
      guard.ready();
    } catch (err) {
      guard.fail(err);
    }
  });
  after(async () => {
    await srv?.stop();
  });

  sysTest(
    "an instructor watches a student's shell live and read-only; a watch needs the cohort's token",
    SYSTEM_NEEDS,
    async () => {
      const name = `watch-${Date.now().toString(36)}`;
      const made = await cli(['cohort', 'create', name, '--labs', 'uts-hostname,ns-pid']);
      assert.equal(made.code, 0, made.stderr);
      const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
      const token = /#token=(\S+)/.exec(made.stdout)?.[1] as string;
      const other = await cli(['cohort', 'create', `${name}-b`, '--labs', 'uts-hostname']);
      const otherToken = /#token=(\S+)/.exec(other.stdout)?.[1] as string;
      const inst = async (path: string, method = 'GET', tok = token, body?: unknown) => {
        const r = await fetch(`${srv.url}/api/instructor/cohorts/${path}`, {
          method,
          headers: {
            authorization: `Bearer ${tok}`,
            origin: srv.url,
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        return { status: r.status, body: (await r.json()) as unknown };
      };

      // Ann joins and starts the lab; her shell is 100x30.
      const ann = student(srv);
      assert.equal((await ann('POST', '/api/cohorts/join', { code, name: 'Ann' })).status, 200);
      const started = await ann('POST', '/api/labs/uts-hostname/session');
      assert.equal(started.status, 200, JSON.stringify(started.body));
      const ls = started.body as LabSession;
      const t1 = ls.terminals[0]?.term as string;
      const annSock = await TermClient.connect(srv.url, { session: ls.session, token: ls.token });
      const watchedCounts: number[] = [];
      annSock.socket.on('session:watchers', ({ count }) => watchedCounts.push(count));
      assert.equal((await annSock.open({ term: t1, cols: 100, rows: 30 })).ok, true);
      await annSock.run(t1, 'echo before-$((6*7))');

      // The instructor finds her live terminal.
      const view = (await inst(name)).body as InstructorView;
      const key = view.students.find((s) => s.name === 'Ann')?.key as string;
      const st = (await inst(`${name}/students/${key}`)).body as InstructorStudent;
      assert.deepEqual(
        st.live.map((l) => [l.lab, l.terminals.map((t) => t.term)]),
        [['uts-hostname', ls.terminals.map((t) => t.term)]],
      );
      const watch = { cohort: name, token, student: key, lab: 'uts-hostname' };

      // Refused: no token, another cohort's token, a key or lab not of this
      // cohort, a lab with no live sandbox; each says why and is final.
      const refusal = async (w: Record<string, unknown>) => {
        try {
          (await TermClient.connect(srv.url, { watch: w })).close();
          return 'connected';
        } catch (err) {
          const e = err as Error & { data?: { fatal?: boolean } };
          assert.equal(e.data?.fatal, true, `refusal of ${JSON.stringify(w)} is final`);
          return e.message;
        }
      };
      assert.match(await refusal({ ...watch, token: otherToken }), /not the instructor link/);
      assert.match(await refusal({ ...watch, token: 'x'.repeat(43) }), /not the instructor link/);
      assert.match(
        await refusal({ ...watch, cohort: `${name}-b`, token: otherToken }),
        /no such student/,
      );
      assert.match(await refusal({ ...watch, student: '0123456789abcdef' }), /no such student/);
      assert.match(await refusal({ ...watch, lab: 'cap-setcap-ping' }), /no lab/);
      assert.match(await refusal({ ...watch, lab: 'ns-pid' }), /no live sandbox/);
      assert.match(await refusal({ cohort: name, token }), /unauthorized/);
      // A student's own session credentials do not make a watch, nor the reverse.
      assert.match(await refusal({ ...watch, session: ls.session }), /unauthorized/);

      // Watching: the replay, then live output; the size is Ann's.
      const eye = await TermClient.connect(srv.url, { watch });
      const opened = await eye.open({ term: t1, cols: undefined, rows: undefined });
      assert.ok(opened.ok, JSON.stringify(opened));
      assert.deepEqual([opened.cols, opened.rows], [100, 30]);
      await eye.waitFor(t1, 'before-42');
      await until(() => watchedCounts.at(-1) === 1, 'Ann is told she is watched');
      await annSock.run(t1, 'echo live-$((6*8))');
      await eye.waitFor(t1, 'live-48');

      // Read-only: every write is refused with a reason, and none reaches the shell.
      const errs = (): ProtocolError[] => eye.errors;
      const inputAck = await new Promise<{ ok: boolean }>((resolve) =>
        eye.socket.emit('term:input', { term: t1, data: 'echo pwned > /tmp/pwned\r' }, resolve),
      );
      assert.equal(inputAck.ok, false);
      eye.socket.emit('term:resize', { term: t1, cols: 20, rows: 5 });
      eye.socket.emit('term:close', { term: t1 });
      const fresh = await eye.open({ name: 'T9', cols: 80, rows: 24 });
      assert.equal(fresh.ok, false);
      assert.equal(!fresh.ok && fresh.error.code, 'read-only');
      await until(() => errs().length >= 3, 'three read-only errors');
      assert.deepEqual(
        errs().map((e) => [e.code, e.event]),
        [
          ['read-only', 'term:input'],
          ['read-only', 'term:resize'],
          ['read-only', 'term:close'],
        ],
      );
      const left = await annSock.run(
        t1,
        'test -e /tmp/pwned && echo PWNED || echo clean; stty size',
      );
      assert.equal(left.trim(), 'clean\n30 100', 'no input and no resize reached the shell');

      // Ann's resize reaches the view, which follows it.
      const sizes: string[] = [];
      eye.socket.on('term:size', ({ cols, rows }) => sizes.push(`${cols}x${rows}`));
      annSock.socket.emit('term:resize', { term: t1, cols: 120, rows: 40 });
      await until(() => sizes.includes('120x40'), 'the view told of the resize');

      // At most 4 views of one session, also when 8 CONNECT packets come in one burst
      // on one websocket (the cap was checked before the count went up: 8 got in).
      const more = await Promise.all([1, 2, 3].map(() => TermClient.connect(srv.url, { watch })));
      assert.match(await refusal(watch), /too many views/);
      for (const m of more) m.close();
      await until(() => watchedCounts.at(-1) === 1, 'back to one view').catch((e) => {
        throw new Error(`${(e as Error).message}: ${watchedCounts.join(',')}`);
      });
      const burst = await connectBurst(srv, { v: 1, watch }, 8);
      assert.equal(burst.connected, 3, `3 more views, not ${burst.connected}`);
      assert.equal(burst.refused, 5);
      await until(() => watchedCounts.at(-1) === 1, 'the burst left');
      const sockets = await connectBurst(srv, { v: 1, session: ls.session, token: ls.token }, 30);
      assert.ok(
        sockets.connected <= 15,
        `at most 16 student sockets, got ${sockets.connected + 1}`,
      );
      await until(() => watchedCounts.at(-1) === 1, 'the extra views left');
      eye.close();
      await until(() => watchedCounts.at(-1) === 0, 'Ann is told nobody watches');

      // Every instructor route wants this cohort's token: none, another cohort's, a
      // truncated one, all get the same 403 (and the student's sandbox is untouched).
      const routes: [string, string, unknown?][] = [
        ['GET', name],
        ['GET', `${name}/export?format=json`],
        ['GET', `${name}/export?what=analytics`],
        ['POST', `${name}/notice`, { text: 'hi' }],
        ['GET', `${name}/students/${key}`],
        ['POST', `${name}/students/${key}/labs/uts-hostname/end`],
        ['POST', `${name}/students/${key}/labs/uts-hostname/reset`],
      ];
      for (const [method, route, body] of routes)
        for (const tok of ['', otherToken, token.slice(0, -1)]) {
          const r = await inst(route, method, tok, body);
          assert.equal(r.status, 403, `${method} ${route} with ${tok ? 'a wrong' : 'no'} token`);
        }
      assert.equal(
        (await inst(`${name}/students/${key}`)).body !== undefined &&
          ((await inst(`${name}/students/${key}`)).body as InstructorStudent).live.length,
        1,
        'still running',
      );

      // A student cannot use the instructor routes, with or without a token guess.
      assert.equal((await ann('GET', `/api/instructor/cohorts/${name}`)).status, 403);
      assert.equal(
        (await ann('POST', `/api/instructor/cohorts/${name}/notice`, { text: 'hi' })).status,
        403,
      );
      annSock.close();
      await ann('DELETE', '/api/labs/uts-hostname/session');
    },
  );

  sysTest(
    "a notice reaches the class's pages; a reset by the instructor forgets progress, ends the sandbox and drops the student's files",
    SYSTEM_NEEDS,
    async () => {
      const { code, inst } = await makeClass(srv, 'notice');
      const bo = student(srv);
      assert.equal((await bo('POST', '/api/cohorts/join', { code, name: 'Bo' })).status, 200);
      const ls = (await bo('POST', '/api/labs/uts-hostname/session')).body as LabSession;
      const sock = await TermClient.connect(srv.url, { session: ls.session, token: ls.token });
      const notices: string[] = [];
      sock.socket.on('class:notice', (n) => notices.push(n.text));
      const failed = await bo('POST', '/api/labs/uts-hostname/steps/private-hostname/check');
      assert.equal(failed.status, 200);

      // Bad notices: empty, too long, not JSON. Then a real one, with markup as text.
      assert.equal((await inst('/notice', 'POST', { text: '  ' })).status, 400);
      assert.equal((await inst('/notice', 'POST', { text: 'x'.repeat(281) })).status, 400);
      const sent = await inst('/notice', 'POST', { text: 'Break <b>until</b> 11:00' });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      await until(() => notices.includes('Break <b>until</b> 11:00'), 'the notice on the socket');
      const me = (await bo('GET', '/api/me')).body as {
        cohorts: { notice?: { text: string } }[];
      };
      assert.equal(me.cohorts[0]?.notice?.text, 'Break <b>until</b> 11:00');

      // Reset: Bo's socket is told why, his progress is gone, and so is the sandbox.
      const view = (await inst('')).body as unknown as InstructorView;
      const key = view.students[0]?.key as string;
      assert.equal(view.students[0]?.progress['uts-hostname']?.['private-hostname']?.attempts, 1);
      const reset = await inst(`/students/${key}/labs/uts-hostname/reset`, 'POST');
      assert.deepEqual(reset.body, { reset: true, ended: true });
      await until(() => sock.ended !== undefined, 'session:ended');
      assert.match(sock.ended as string, /your instructor reset this lab/);
      const after = (await inst('')).body as unknown as InstructorView;
      assert.equal(after.students[0]?.progress['uts-hostname']?.['private-hostname']?.attempts, 0);
      const st = (await inst(`/students/${key}`)).body as unknown as InstructorStudent;
      assert.deepEqual(st.live, []);
      assert.equal((await inst(`/students/${key}/labs/ns-pid/reset`, 'POST')).status, 404);
      assert.equal((await inst(`/students/${key}/labs/uts-hostname/reset`)).status, 405);
      sock.close();
      // His files went with it, as after his own reset: the next start is the
      // lab's own. (A start on kept files says so: shown first by ending and
      // starting again.)
      const again = async () => {
        const r = await bo('POST', '/api/labs/uts-hostname/session');
        assert.equal(r.status, 200, JSON.stringify(r.body));
        return (r.body as LabSession).notice ?? '';
      };
      assert.doesNotMatch(await again(), /your files are as you left them/);
      await bo('DELETE', '/api/labs/uts-hostname/session');
      assert.match(await again(), /your files are as you left them/);
      assert.deepEqual((await inst(`/students/${key}/labs/uts-hostname/reset`, 'POST')).body, {
        reset: true,
        ended: true,
      });
      assert.doesNotMatch(await again(), /your files are as you left them/);
      // A parked lab (no sandbox) is reset too: its files dropped.
      await bo('DELETE', '/api/labs/uts-hostname/session');
      assert.deepEqual((await inst(`/students/${key}/labs/uts-hostname/reset`, 'POST')).body, {
        reset: true,
        ended: false,
      });
      assert.doesNotMatch(await again(), /your files are as you left them/);
      await bo('DELETE', '/api/labs/uts-hostname/session');
    },
  );

  sysTest(
    'a class that is over keeps its record for the instructor, but its students are no longer theirs to watch, change or notify',
    SYSTEM_NEEDS,
    async () => {
      const { name, code, token, inst } = await makeClass(srv, 'over');
      const dan = student(srv);
      assert.equal((await dan('POST', '/api/cohorts/join', { code, name: 'Dan' })).status, 200);
      const first = (await dan('POST', '/api/labs/uts-hostname/session')).body as LabSession;
      const key = ((await inst('')).body as unknown as InstructorView).students[0]?.key as string;
      const watch = { cohort: name, token, student: key, lab: 'uts-hostname' };
      // While the class is on: watched, listed live.
      const eye = await TermClient.connect(srv.url, { watch });
      const on = (await inst(`/students/${key}`)).body as unknown as InstructorStudent;
      assert.equal(on.live.length, 1);

      assert.equal((await cli(['cohort', 'close', name])).code, 0);
      // Over: his running sandbox is his own now. A view open since before is closed too.
      await until(() => eye.ended !== undefined, 'the open view told');
      assert.match(eye.ended as string, /no longer watched: the class is closed/);
      eye.close();
      await assert.rejects(TermClient.connect(srv.url, { watch }), /the class is closed/);
      for (const action of ['end', 'reset', 'steps/private-hostname/restart']) {
        const r = await inst(`/students/${key}/labs/uts-hostname/${action}`, 'POST');
        assert.equal(r.status, 409, `${action}: ${JSON.stringify(r.body)}`);
        assert.match(String(r.body.error), /the class is closed/);
      }
      assert.equal((await inst('/notice', 'POST', { text: 'still here?' })).status, 409);
      // Nor is he removed: the record stays whole.
      assert.equal((await inst(`/students/${key}/remove`, 'POST')).status, 409);
      assert.deepEqual(
        ((await inst('')).body as unknown as InstructorView).students.map((x) => x.name),
        ['Dan'],
      );
      const after = (await inst(`/students/${key}`)).body as unknown as InstructorStudent;
      assert.deepEqual(after.live, [], 'what he runs now is not shown');
      // The record stays: roster, progress, export.
      assert.equal((await inst('')).status, 200);
      const csv = await fetch(`${srv.url}/api/instructor/cohorts/${name}/export?format=csv`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(csv.status, 200);
      assert.match(await csv.text(), /,Dan,/);
      // His sandbox was not touched by any of it: the same session, resumed.
      const mine = await dan('POST', '/api/labs/uts-hostname/session');
      assert.equal(mine.status, 200);
      assert.equal((mine.body as LabSession).session, first.session);
      await dan('DELETE', '/api/labs/uts-hostname/session');
    },
  );

  sysTest(
    'seats taken by made-up students come back: the instructor removes them, and a new code keeps them out',
    SYSTEM_NEEDS,
    async () => {
      const { name, code, inst } = await makeClass(srv, 'squat', ['--seats', '2']);
      // Two cookies from one address take both seats; Carol is refused.
      for (const fake of ['x1', 'x2'])
        assert.equal(
          (await student(srv)('POST', '/api/cohorts/join', { code, name: fake })).status,
          200,
        );
      const carol = student(srv);
      const full = await carol('POST', '/api/cohorts/join', { code, name: 'Carol' });
      assert.equal(full.status, 403);
      assert.match(String((full.body as { hint?: string }).hint), /ask your instructor/);
      // The instructor draws a new code and removes the made-up students.
      const set = await cli(['cohort', 'set', name, '--new-code']);
      assert.equal(set.code, 0, set.stderr);
      const code2 = /code=([A-Z0-9-]+)/.exec(set.stdout)?.[1] as string;
      assert.notEqual(code2, code);
      const view = (await inst('')).body as unknown as InstructorView;
      for (const st of view.students)
        assert.deepEqual(await inst(`/students/${st.key}/remove`, 'POST'), {
          status: 200,
          body: { removed: true },
        });
      // The old code joins nobody; Carol joins with the new one.
      assert.equal(
        (await student(srv)('POST', '/api/cohorts/join', { code, name: 'x3' })).status,
        404,
      );
      assert.equal(
        (await carol('POST', '/api/cohorts/join', { code: code2, name: 'Carol' })).status,
        200,
      );
      const after = (await inst('')).body as unknown as InstructorView;
      assert.deepEqual(
        after.students.map((x) => x.name),
        ['Carol'],
      );
      // A removed key is no student of the class any more.
      assert.equal((await inst(`/students/${view.students[0]?.key}/remove`, 'POST')).status, 404);
    },
  );

  sysTest(
    'with classes only, a student removed from their class loses the sandbox they may no longer use',
    SYSTEM_NEEDS,
    async () => {
      // (Over the shared test store, as the suite's other servers.)
      const only = await startServer(undefined, { UNDERLAY_CLASSES_ONLY: '1' });
      let name = '';
      try {
        const made = await makeClass(only, 'only');
        name = made.name;
        const { code, inst } = made;
        const eve = student(only);
        assert.equal((await eve('POST', '/api/cohorts/join', { code, name: 'Eve' })).status, 200);
        const ls = (await eve('POST', '/api/labs/uts-hostname/session')).body as LabSession;
        const sock = await TermClient.connect(only.url, { session: ls.session, token: ls.token });
        const key = ((await inst('')).body as unknown as InstructorView).students[0]?.key;
        assert.equal((await inst(`/students/${key}/remove`, 'POST')).status, 200);
        await until(() => sock.ended !== undefined, 'session:ended');
        assert.match(sock.ended as string, /you were removed from the class/);
        sock.close();
        assert.equal((await eve('POST', '/api/labs/uts-hostname/session')).status, 403);
      } finally {
        if (name) await cli(['cohort', 'close', name]);
        await only.stop();
      }
    },
  );

  sysTest(
    "a student's labs are their class's; the resume link makes another browser the same student",
    SYSTEM_NEEDS,
    async () => {
      const name = `scope-${Date.now().toString(36)}`;
      const made = await cli(['cohort', 'create', name, '--labs', 'uts-hostname,ns-pid']);
      assert.equal(made.code, 0, made.stderr);
      const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
      const cy = student(srv);
      const joined = await cy('POST', '/api/cohorts/join', { code, name: 'Cy' });
      assert.equal(joined.status, 200);
      const resume = (joined.body as { resume: string }).resume;

      // Only the class's labs are listed; another lab can be read, not started.
      const list = (await cy('GET', '/api/labs')).body as LabList;
      assert.deepEqual(list.labs.map((l) => l.id).sort(), ['ns-pid', 'uts-hostname']);
      assert.deepEqual(list.scope, { cohorts: [name], classesOnly: false });
      assert.equal((await cy('GET', '/api/labs/cap-setcap-ping')).status, 200);
      const refused = await cy('POST', '/api/labs/cap-setcap-ping/session');
      assert.equal(refused.status, 403);
      assert.match(
        (refused.body as { error: string }).error,
        new RegExp(`lab cap-setcap-ping is not part of your class \\(${name}\\)`),
      );
      assert.equal(
        (await cy('POST', '/api/labs/cap-setcap-ping/steps/real-ping/check', { answer: 'x' }))
          .status,
        403,
      );

      // Another browser: a stranger until it opens the resume link, then Cy.
      const other = student(srv);
      assert.equal(((await other('GET', '/api/labs')).body as LabList).labs.length > 2, true);
      // A changed signature (its first character: the last one carries padding bits, and
      // "…AA" replaced by "AA" was the key itself once in a thousand runs), a bare id.
      const [idPart, sig = ''] = resume.split('.');
      const forged = `${idPart}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
      for (const bad of ['', 'x', forged, resume.replace(/\..*/, '')]) {
        const r = await other('POST', '/api/me/resume', { key: bad });
        assert.ok([400, 403].includes(r.status), `${bad}: ${r.status}`);
      }
      const cookieAsKey = await other('POST', '/api/me/resume', { key: 'not.a-key' });
      assert.equal(cookieAsKey.status, 403);
      // A preview says whose link it is and switches nothing (a link opened is not consent).
      const preview = await other('POST', '/api/me/resume', { key: resume, preview: true });
      assert.equal(preview.status, 200);
      assert.deepEqual(
        (preview.body as { cohorts: { name: string }[] }).cohorts.map((c) => c.name),
        ['Cy'],
      );
      assert.deepEqual(((await other('GET', '/api/me')).body as Me).cohorts, [], 'not switched');
      const resumed = await other('POST', '/api/me/resume', { key: resume });
      assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
      assert.deepEqual(
        (resumed.body as Me).cohorts.map((c) => [c.cohort, c.name]),
        [[name, 'Cy']],
      );
      assert.deepEqual(
        ((await other('GET', '/api/labs')).body as LabList).labs.map((l) => l.id).sort(),
        ['ns-pid', 'uts-hostname'],
      );
      assert.equal(((await other('GET', '/api/me')).body as Me).resume, resume);

      // The bare id (the key's prefix, or the cookie without its signature) is not the
      // student, even with history: only ids from before this server signed any are.
      const started = await cy('POST', '/api/labs/uts-hostname/session');
      assert.equal(started.status, 200);
      assert.equal(
        (await cy('POST', '/api/labs/uts-hostname/steps/private-hostname/check')).status,
        200,
      );
      await cy('DELETE', '/api/labs/uts-hostname/session');
      const bareId = resume.replace(/\..*$/, '');
      const asBare = await fetch(`${srv.url}/api/me`, {
        headers: { cookie: `underlay_student=${bareId}` },
      });
      assert.deepEqual(((await asBare.json()) as Me).cohorts, [], 'a bare id is a new student');

      // A closed class no longer scopes: open mode again.
      assert.equal((await cli(['cohort', 'close', name])).code, 0);
      const after = (await cy('GET', '/api/labs')).body as LabList;
      assert.ok(after.labs.length > 2);
      assert.equal(after.scope, undefined);
    },
  );
});

describe('classroom: a classes-only server', () => {
  sysTest(
    'without a class nothing can be started; joining one opens its labs',
    ['root'],
    async () => {
      // Its own state dir: no sandbox is made, and the other server's sandboxes are not its business.
      const env = {
        UNDERLAY_STATE_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-classes-only-')),
      };
      const srv2 = await startServer(undefined, { ...env, UNDERLAY_CLASSES_ONLY: '1' });
      try {
        const made = await cli(['cohort', 'create', 'only-1', '--labs', 'ns-pid'], { env });
        assert.equal(made.code, 0, made.stderr);
        const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
        const anon = student(srv2);
        const none = (await anon('GET', '/api/labs')).body as LabList;
        assert.deepEqual(none.labs, []);
        assert.deepEqual(none.scope, { cohorts: [], classesOnly: true });
        const refused = await anon('POST', '/api/labs/ns-pid/session');
        assert.equal(refused.status, 403);
        assert.match((refused.body as { error: string }).error, /runs labs for its classes only/);
        assert.equal((await anon('POST', '/api/cohorts/join', { code, name: 'Di' })).status, 200);
        assert.deepEqual(
          ((await anon('GET', '/api/labs')).body as LabList).labs.map((l) => l.id),
          ['ns-pid'],
        );
      } finally {
        await srv2.stop();
        fs.rmSync(env.UNDERLAY_STATE_DIR, { recursive: true, force: true });
      }
    },
    // Under emulation (the VM tier) a second server takes 30-40 s to start
    // (sysTest's limit there is 4 times this).
    { timeout: 60_000 },
  );
});

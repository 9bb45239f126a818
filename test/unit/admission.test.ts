/**
 * Admission control, student ids and request guards as pure functions
 * (the same rules over real HTTP are in test/system/admission.test.ts).
 */
import * as assert from 'node:assert/strict';
import type * as http from 'node:http';
import * as os from 'node:os';
import { test } from 'node:test';
import { loadConfig } from '../../server/config';
import {
  Admission,
  aggregateBudget,
  DEFAULT_RATES,
  hostCapacity,
  QUEUE_ACTIVE_MS,
  QUEUE_STALE_MS,
  type AdmissionLimits,
} from '../../server/sessions/admission';
import { RequestError } from '../../server/util/errors';
import { hostAllowed, stateChangeRefusal } from '../../server/transport/guard';
import { clientOf, StudentIds } from '../../server/transport/identity';

const limits = (over: Partial<AdmissionLimits> = {}): AdmissionLimits => ({
  capacity: 2,
  perClient: 100,
  perStudent: 2,
  queueMax: 3,
  rates: DEFAULT_RATES,
  ...over,
});

function refused(fn: () => unknown): RequestError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof RequestError, String(e));
    return e;
  }
  assert.fail('expected a refusal');
}

test('rates: a burst passes, then 429 with when to retry; the bucket refills with time', () => {
  let now = 0;
  const a = new Admission(
    limits({ rates: { ...DEFAULT_RATES, check: { burst: 3, perMinute: 6 } } }),
    () => now,
  );
  for (let i = 0; i < 3; i++) a.take('check', 'alice');
  const e = refused(() => a.take('check', 'alice'));
  assert.equal(e.status, 429);
  assert.equal(e.retryAfterMs, 10_000, 'one token per 10 s at 6/min');
  a.take('check', 'bob'); // per key
  now += 9_000;
  refused(() => a.take('check', 'alice'));
  now += 1_000;
  a.take('check', 'alice');
  now += 3_600_000;
  for (let i = 0; i < 3; i++) a.take('check', 'alice');
  refused(() => a.take('check', 'alice')); // never more than the burst
});

test('capacity: a full host answers 503 with the place in line; places free in line order', () => {
  let now = 0;
  const a = new Admission(limits(), () => now);
  const s1 = a.admit('c', 'alice');
  a.admit('c', 'bob');
  const e = refused(() => a.admit('c', 'carol'));
  assert.equal(e.status, 503);
  assert.equal(e.queuePosition, 1);
  assert.match(e.message, /full: you are 1st in line/);
  assert.equal(refused(() => a.admit('c', 'dave')).queuePosition, 2);
  assert.equal(refused(() => a.admit('c', 'carol')).queuePosition, 1, 'asking again keeps it');
  // Whom a place freed now would go to (a warm seat gives its place up only for them).
  assert.equal(a.firstInLine('carol'), true);
  assert.equal(a.firstInLine('dave'), false);
  assert.equal(a.firstInLine('nobody'), false);
  s1.release();
  s1.release(); // twice is once
  assert.equal(a.used, 1);
  // One place is free: a newcomer and dave (2nd) must not take it before carol.
  assert.equal(refused(() => a.admit('c', 'erin')).queuePosition, 3);
  assert.equal(refused(() => a.admit('c', 'dave')).queuePosition, 2);
  a.admit('c', 'carol');
  assert.equal(a.waiting, 2);
  assert.equal(refused(() => a.admit('c', 'dave')).queuePosition, 1);
  // The line is bounded.
  refused(() => a.admit('c', 'f'));
  assert.match(refused(() => a.admit('c', 'g')).message, /so is the line/);
  // A waiter that went quiet (a closed tab) does not hold up those behind it.
  const b = new Admission(limits({ capacity: 1 }), () => now);
  const only = b.admit('c', 'x');
  refused(() => b.admit('c', 'ghost'));
  refused(() => b.admit('c', 'waiting'));
  only.release();
  now += QUEUE_ACTIVE_MS + 1;
  assert.equal(b.firstInLine('waiting'), true, 'the quiet one ahead does not count');
  b.admit('c', 'waiting');
  // A waiter that stops asking loses its place.
  now += QUEUE_STALE_MS + 1;
  assert.equal(a.waiting, 0);
  assert.equal(refused(() => a.admit('c', 'erin')).queuePosition, 1);
});

test('per client: one address holds at most perClient places in line', () => {
  const a = new Admission(limits({ capacity: 1, perClient: 2 }));
  a.admit('10.0.0.9', 'running');
  refused(() => a.admit('10.0.0.1', 'w1'));
  refused(() => a.admit('10.0.0.1', 'w2'));
  const e = refused(() => a.admit('10.0.0.1', 'w3'));
  assert.equal(e.status, 429);
  assert.match(e.message, /2 places in line are already taken from your address/);
  assert.equal(refused(() => a.admit('10.0.0.2', 'other')).queuePosition, 3);
});

test('per client: live sandboxes from one address are capped; a release makes room', () => {
  const a = new Admission(limits({ capacity: 10, perClient: 2 }));
  const s = a.admit('10.0.0.1', 'x');
  a.admit('10.0.0.1', 'y');
  const e = refused(() => a.admit('10.0.0.1', 'z'));
  assert.equal(e.status, 429);
  assert.match(e.message, /2 sandboxes are already running from your address/);
  a.admit('10.0.0.2', 'z');
  s.release();
  a.admit('10.0.0.1', 'z');
  // Re-adopted sandboxes count even over capacity.
  for (let i = 0; i < 20; i++) a.adopt();
  assert.equal(a.used, 23);
});

test('capacity from the host: the smallest of memory, pids and id ranges, with a reserve', () => {
  const facts = { memTotalBytes: 24 * 1024 ** 3, pidMax: 32768, idRanges: 1000 };
  const b = aggregateBudget(facts);
  assert.ok(b.memoryBytes <= facts.memTotalBytes - 1024 ** 3);
  assert.ok(b.pids <= 32768 - 2048);
  const c = hostCapacity(facts, { memoryBytes: 512 * 1024 ** 2, pids: 512 });
  assert.equal(c.capacity, Math.min(c.byMemory, c.byPids, 1000));
  assert.ok(c.capacity >= 100 && c.capacity <= 500, String(c.capacity));
  const small = hostCapacity(
    { memTotalBytes: 2 * 1024 ** 3, pidMax: 4096, idRanges: 1000 },
    { memoryBytes: 512 * 1024 ** 2, pids: 512 },
  );
  assert.ok(small.capacity >= 1 && small.capacity < 40, String(small.capacity));
  assert.equal(
    hostCapacity(
      { memTotalBytes: 1024 ** 4, pidMax: 4194304, idRanges: 7 },
      { memoryBytes: 1, pids: 1 },
    ).capacity,
    7,
  );
});

test('config: admission settings parse, junk is refused with the variable name', () => {
  const c = loadConfig({
    UNDERLAY_CAPACITY: '40',
    UNDERLAY_PER_CLIENT: '200',
    UNDERLAY_RATES: 'check=5/10, hint=1/2',
    UNDERLAY_ALLOWED_HOSTS: 'lab.example.edu,*.campus',
    UNDERLAY_BARE_SESSIONS: '1',
  });
  assert.equal(c.admission.capacity, 40);
  assert.equal(c.admission.perClient, 200);
  assert.equal(c.admission.perStudent, 2);
  assert.deepEqual(c.admission.rates, {
    check: { burst: 5, perMinute: 10 },
    hint: { burst: 1, perMinute: 2 },
  });
  assert.deepEqual(c.allowedHosts, ['lab.example.edu', '*.campus']);
  assert.equal(c.bareSessions, true);
  assert.equal(loadConfig({}).bareSessions, false, 'bare sessions are off by default');
  assert.equal(loadConfig({}).admission.capacity, undefined, 'derived from the host');
  assert.throws(() => loadConfig({ UNDERLAY_CAPACITY: '0' }), /UNDERLAY_CAPACITY/);
  assert.throws(() => loadConfig({ UNDERLAY_RATES: 'checks=1/1' }), /UNDERLAY_RATES/);
});

test('warm seats: UNDERLAY_WARM is LAB=N, junk refused with what it should be', () => {
  assert.deepEqual(
    [...loadConfig({ UNDERLAY_WARM: 'ns-uts-ipc=30, cgroups-cpu=0' }).warm],
    [
      ['ns-uts-ipc', 30],
      ['cgroups-cpu', 0],
    ],
  );
  assert.equal(loadConfig({}).warm.size, 0);
  for (const bad of ['ns-uts-ipc', 'ns=-1', 'ns=1.5', 'Ns=1', 'ns=1001', '=3'])
    assert.throws(() => loadConfig({ UNDERLAY_WARM: bad }), /UNDERLAY_WARM: .* is not LAB=N/, bad);
  // A lab twice is a mistake (which figure was meant?), not the last one winning.
  assert.throws(
    () => loadConfig({ UNDERLAY_WARM: 'ns=2,ns=3' }),
    /UNDERLAY_WARM: lab ns is given twice/,
  );
});

test('a seat handed over: the place moves to the taker, within their cap; refused, nothing moves', () => {
  const a = new Admission(limits({ capacity: 2, perClient: 1 }));
  const seat = a.adopt('~warm');
  const other = a.admit('10.0.0.2', 'bob');
  assert.equal(a.used, 2);
  // The host is full: Ann is put in line; then she takes the seat (no new
  // sandbox), and leaves the line.
  assert.equal(refused(() => a.admit('10.0.0.1', 'ann')).status, 503);
  assert.equal(a.waiting, 1);
  const mine = a.handOver(seat, '10.0.0.1', 'ann');
  assert.equal(a.waiting, 0, 'Ann left the line');
  assert.equal(a.used, 2);
  assert.equal(mine.client, '10.0.0.1');
  seat.release(); // already released by the hand-over: no double count
  assert.equal(a.used, 2);
  // Over the taker's cap: refused, the seat keeps its place.
  const seat2 = a.adopt('~warm');
  assert.equal(refused(() => a.handOver(seat2, '10.0.0.1', 'ann')).status, 429);
  assert.equal(a.used, 3);
  seat2.release();
  mine.release();
  other.release();
  assert.equal(a.used, 0);
});

const req = (headers: http.IncomingHttpHeaders, remoteAddress = '127.0.0.1') =>
  ({ headers, socket: { remoteAddress } }) as unknown as http.IncomingMessage;

test('student ids: minted signed; a forged or unsigned id is replaced, a known old one kept', () => {
  const ids = new StudentIds('s3cret', { known: (id) => id === 'k'.repeat(24) });
  const cookies: string[] = [];
  const res = {
    setHeader: (_: string, v: string) => cookies.push(v),
  } as unknown as http.ServerResponse;
  const alice = ids.get(req({}), res);
  const cookie = (cookies[0] ?? '').split(';')[0] as string;
  assert.match(cookie, /^underlay_student=[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{22}$/);
  assert.match(cookies[0] ?? '', /HttpOnly; SameSite=Lax/);
  assert.equal(ids.get(req({ cookie: `a=1; ${cookie}` }), res), alice, 'a signed id is kept');
  assert.equal(cookies.length, 1, 'and not set again');
  // Another student's id with a made-up signature, or no signature: a new id.
  const sig = cookie.split('.')[1] as string;
  const forged = `underlay_student=${'b'.repeat(24)}.${sig}`;
  assert.notEqual(ids.get(req({ cookie: forged }), res), 'b'.repeat(24));
  assert.notEqual(
    ids.get(req({ cookie: `underlay_student=${'c'.repeat(24)}` }), res),
    'c'.repeat(24),
  );
  assert.equal(ids.get(req({ cookie: `underlay_student=${'k'.repeat(24)}` }), res), 'k'.repeat(24));
  // Another server's secret does not verify.
  assert.notEqual(new StudentIds('other').verify(cookie), alice);
});

test('student ids: another site cannot make a browser mint ids (Fetch Metadata)', () => {
  const ids = new StudentIds('s');
  const res = { setHeader: () => {} } as unknown as http.ServerResponse;
  const img = {
    'sec-fetch-site': 'cross-site',
    'sec-fetch-mode': 'no-cors',
    'sec-fetch-dest': 'image',
  };
  assert.equal(refused(() => ids.get(req(img), res)).status, 403);
  const frame = {
    'sec-fetch-site': 'cross-site',
    'sec-fetch-mode': 'navigate',
    'sec-fetch-dest': 'iframe',
  };
  refused(() => ids.get(req(frame), res));
  // A link from an LMS (top-level navigation), this site's own calls, and non-browsers mint.
  ids.get(req({ ...frame, 'sec-fetch-dest': 'document' }), res);
  ids.get(req({ 'sec-fetch-site': 'same-origin', 'sec-fetch-mode': 'cors' }), res);
  ids.get(req({}), res);
});

test('student ids: minting is rate-limited per client address', () => {
  const a = new Admission(
    limits({ rates: { ...DEFAULT_RATES, identity: { burst: 2, perMinute: 1 } } }),
  );
  const ids = new StudentIds('s', { admission: a });
  const res = { setHeader: () => {} } as unknown as http.ServerResponse;
  ids.get(req({}, '10.1.1.1'), res);
  ids.get(req({}, '10.1.1.1'), res);
  assert.equal(refused(() => ids.get(req({}, '10.1.1.1'), res)).status, 429);
  ids.get(req({}, '10.1.1.2'), res);
  // IPv6 clients are keyed by /64.
  ids.get(req({}, '2001:db8:1:2::5'), res);
  ids.get(req({}, '2001:db8:1:2:ffff::9'), res);
  refused(() => ids.get(req({}, '2001:db8:1:2::77'), res));
  assert.equal(clientOf(req({}, '::ffff:10.0.0.7')), '10.0.0.7');
  assert.equal(clientOf(req({}, '2001:db8::1')), '2001:db8:0:0::/64');
});

test('host allow-list: IP literals, localhost and this machine; other names only when allowed', () => {
  for (const host of ['127.0.0.1:3000', '[::1]:3000', '10.1.2.3', 'localhost:3000', 'x.localhost'])
    assert.ok(hostAllowed(req({ host })), host);
  assert.ok(hostAllowed(req({ host: `${os.hostname()}:3000` })));
  assert.ok(!hostAllowed(req({ host: 'evil.example:3000' })), 'a rebound name is refused');
  for (const host of ['[::1].evil.com', '[::1]@evil.com', '[::1]x:80', '[', '127.0.0.1.nip.io'])
    assert.ok(!hostAllowed(req({ host })), host);
  assert.ok(!hostAllowed(req({})), 'no Host at all');
  assert.ok(hostAllowed(req({ host: 'lab.example.edu' }), { allowedHosts: ['lab.example.edu'] }));
  assert.ok(hostAllowed(req({ host: 'a.campus:80' }), { allowedHosts: ['*.campus'] }));
  assert.ok(!hostAllowed(req({ host: 'campus.evil' }), { allowedHosts: ['*.campus'] }));
  assert.ok(
    hostAllowed(req({ host: 'lab.school.org' }), { allowedOrigins: ['https://lab.school.org'] }),
  );
});

test('state changes: same-origin Origin, or no Origin and the client header', () => {
  const host = '127.0.0.1:3000';
  assert.equal(stateChangeRefusal(req({ host, origin: 'http://127.0.0.1:3000' })), undefined);
  assert.equal(
    stateChangeRefusal(req({ host, origin: 'http://evil.example' })),
    'origin not allowed',
  );
  assert.equal(stateChangeRefusal(req({ host, origin: 'null' })), 'origin not allowed');
  assert.match(stateChangeRefusal(req({ host })) ?? '', /x-underlay-client/);
  assert.equal(stateChangeRefusal(req({ host, 'x-underlay-client': 'my-cli' })), undefined);
  assert.equal(
    stateChangeRefusal(req({ host, origin: 'https://lms.example' }), ['https://lms.example']),
    undefined,
  );
});

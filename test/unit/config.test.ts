import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig, parseSize } from '../../server/config';
import { createLogger } from '../../server/util/logger';

test('parseSize understands the usual suffixes and rejects junk', () => {
  assert.equal(parseSize('512M'), 512 * 1024 ** 2);
  assert.equal(parseSize('1G'), 1024 ** 3);
  assert.equal(parseSize('64k'), 65536);
  assert.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
  assert.equal(parseSize('100'), 100);
  assert.equal(parseSize('2MiB'), 2 * 1024 ** 2);
  for (const bad of ['', 'lots', '1X', '-5M', '1 G B'])
    assert.equal(parseSize(bad), undefined, bad);
});

test('config defaults and overrides', () => {
  const c = loadConfig({});
  assert.equal(c.stateDir, '/var/lib/underlay');
  assert.equal(c.imagesDir, '/var/lib/underlay/images');
  assert.equal(c.uidBase, 100000 + 65536 * 16384, 'above the subordinate ids adduser hands out');
  const t = loadConfig({
    UNDERLAY_STATE_DIR: '/tmp/x',
    UNDERLAY_UID_BASE: String(100000 + 65536 * 3),
  });
  assert.equal(t.imagesDir, '/tmp/x/images');
  assert.equal(t.uidBase, 296608);
  assert.throws(() => loadConfig({ UNDERLAY_UID_BASE: '0' }), /UNDERLAY_UID_BASE/);
  assert.throws(() => loadConfig({ UNDERLAY_UID_BASE: '100001' }), /UNDERLAY_UID_BASE/);
});

test('logs never carry a student id (the cookie value): it is logged as a short hash', () => {
  const lines: string[] = [];
  const log = createLogger('info', (l) => lines.push(l));
  const cookie = 'Qk3x9vT0aLpW2mZr7yB1cD4e';
  log.info('session created', { session: 's1', owner: cookie, lab: 'ns-pid' });
  assert.equal(lines.length, 1);
  assert.ok(!(lines[0] as string).includes(cookie), lines[0]);
  const o = JSON.parse(lines[0] as string) as Record<string, unknown>;
  assert.match(String(o.owner), /^sha256:[0-9a-f]{12}$/);
  assert.equal(o.session, 's1');
  assert.equal(o.lab, 'ns-pid');
});

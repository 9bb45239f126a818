/**
 * A failed shell start prints the helper's error record, which the terminal
 * rewrites into words (Terminal rewriteFirst). A pty may hand the record over
 * in pieces (seen under emulation, where the raw record reached the page):
 * the terminal waits for the whole first line before rewriting.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { Terminal } from '../../server/terminals/terminal';
import { fakePty } from '../helpers/fake-pty';

const rewrite = (b: Buffer) =>
  b.subarray(0, 4).toString() === 'ERR\t'
    ? Buffer.from(`in words: ${b.toString().split('\t')[2]}\n`)
    : b;

test('an error record in pieces is rewritten whole; ordinary first output passes at once', () => {
  const a = fakePty();
  const t = new Terminal('t1', 'T1', a.pty, 80, 24, { rewriteFirst: rewrite });
  a.data('ER');
  a.data('R\tjoin\tse');
  assert.equal(t.replay.endOffset, 0, 'nothing shown before the record is whole');
  a.data('tns\t3\t\tpidfd\r\n');
  a.exit();
  assert.equal(t.replay.since(0)?.toString(), 'in words: setns\n');

  const b = fakePty();
  const u = new Terminal('t2', 'T2', b.pty, 80, 24, { rewriteFirst: rewrite });
  b.data('\x1b[?2004hroot@lab:~# ');
  assert.equal(u.replay.since(0)?.toString(), '\x1b[?2004hroot@lab:~# ');

  // A record cut short by the exit is still rewritten.
  const c = fakePty();
  const v = new Terminal('t3', 'T3', c.pty, 80, 24, { rewriteFirst: rewrite });
  c.data('ERR\tjoin\tsetns\t3');
  c.exit();
  assert.equal(v.replay.since(0)?.toString(), 'in words: setns\n');
});

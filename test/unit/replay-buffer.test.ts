import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplayBuffer } from '../../server/terminals/replay-buffer';

test('serves exactly the bytes from any held offset', () => {
  const r = new ReplayBuffer(1024);
  r.append(Buffer.from('hello '));
  r.append(Buffer.from('world'));
  assert.equal(r.endOffset, 11);
  assert.equal(r.since(0)?.toString(), 'hello world');
  assert.equal(r.since(3)?.toString(), 'lo world');
  assert.equal(r.since(6)?.toString(), 'world');
  assert.equal(r.since(11)?.toString(), '');
  assert.equal(r.since(12), undefined, 'an offset in the future is refused');
});

test('drops whole old chunks past capacity, and says when an offset fell out', () => {
  const r = new ReplayBuffer(10);
  r.append(Buffer.from('aaaaaa'));
  r.append(Buffer.from('bbbbbb'));
  assert.equal(r.startOffset, 6);
  assert.equal(r.since(2), undefined);
  assert.equal(r.since(6)?.toString(), 'bbbbbb');
  r.append(Buffer.alloc(0));
  assert.equal(r.endOffset, 12);
});

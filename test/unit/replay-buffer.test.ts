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

test('typed echoes, a few bytes each, share blocks instead of one chunk per echo', () => {
  const r = new ReplayBuffer();
  for (let i = 0; i < 100_000; i++) r.append(Buffer.from(`${i % 10}\r\n`));
  // 300,000 bytes: 19 blocks of 16 KiB, not 100,000 chunks.
  assert.ok(r.heldChunks <= 20, `${r.heldChunks} chunks held`);
  assert.equal(r.slice(299_997, 10)?.toString(), '9\r\n');
  assert.equal(r.since(0)?.length, 300_000);
});

test('a view handed out stays as it was while appends fill the same block', () => {
  const r = new ReplayBuffer();
  r.append(Buffer.from('ab'));
  const view = r.slice(0, 100) as Buffer;
  r.append(Buffer.from('cd'));
  assert.equal(view.toString(), 'ab');
  assert.equal(r.slice(1, 2)?.toString(), 'bc');
});

test('any mix of sizes: every slice equals the same bytes of a plain copy of the stream', () => {
  // Deterministic pseudo-random sizes: tiny echoes, medium and large bursts.
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const r = new ReplayBuffer(64 * 1024);
  let all = Buffer.alloc(0);
  for (let i = 0; i < 3000; i++) {
    const kind = rand(10);
    const len = kind < 7 ? rand(8) : kind < 9 ? rand(3000) : rand(40_000);
    const data = Buffer.alloc(len);
    for (let j = 0; j < len; j++) data[j] = rand(256);
    r.append(data);
    all = Buffer.concat([all, data]);
    if (i % 7 === 0) {
      assert.equal(r.endOffset, all.length);
      assert.ok(r.endOffset - r.startOffset <= 64 * 1024 + 40_000, 'bounded');
      const from = r.startOffset + rand(r.endOffset - r.startOffset + 1);
      const max = 1 + rand(20_000);
      const got = r.slice(from, max) as Buffer;
      assert.deepEqual(got, all.subarray(from, Math.min(all.length, from + max)), `at ${i}`);
      assert.equal(r.slice(r.startOffset - 1, 10), r.startOffset > 0 ? undefined : r.slice(-1, 10));
    }
  }
});

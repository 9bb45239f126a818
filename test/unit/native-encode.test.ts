import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeOps } from '../../native/index';

test('ops are encoded as netstrings: step, op, argc, args', () => {
  const b = encodeOps([
    { step: 'hostname', op: 'sethostname', name: 'lab' },
    {
      step: 'rootfs',
      op: 'mount',
      source: '',
      target: '/x',
      fstype: 'tmpfs',
      flags: ['MS_NODEV', 'MS_NOSUID'],
      data: 'size=1m',
    },
  ]);
  assert.equal(
    b.toString(),
    '8:hostname,11:sethostname,1:1,3:lab,6:rootfs,5:mount,1:5,0:,2:/x,5:tmpfs,18:MS_NODEV|MS_NOSUID,7:size=1m,',
  );
});

test('lengths are bytes, not characters', () => {
  const b = encodeOps([{ step: 'init', op: 'write', path: '/é', content: '😀' }]);
  assert.match(b.toString(), /3:\/é,4:😀,$/);
});

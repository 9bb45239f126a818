/**
 * The host's open-file table (server/sandbox/host-files.ts): raised to what
 * systemd sets when it is below what memory could hold, left alone when it
 * is not, and a failure to raise it is said, not thrown.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  ensureFileTable,
  FILE_MAX_UNBOUNDED,
  fileMaxNeeded,
} from '../../server/sandbox/host-files';
import { createLogger } from '../../server/util/logger';

function fakeProc(fileMax: string, memKiB: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-proc-'));
  fs.mkdirSync(path.join(dir, 'sys', 'fs'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'sys', 'fs', 'file-max'), `${fileMax}\n`);
  fs.writeFileSync(
    path.join(dir, 'meminfo'),
    `MemTotal:       ${memKiB} kB\nMemFree:        ${memKiB} kB\n`,
  );
  return dir;
}

const log = createLogger('error');
const read = (dir: string) => fs.readFileSync(path.join(dir, 'sys', 'fs', 'file-max'), 'utf8');

test("the kernel's boot-time table (10 % of RAM at 1 KiB a file) is raised; systemd's is kept", () => {
  const GiB24 = 24 * 1024 * 1024; // KiB
  // What this machine kind's kernel sets at boot without systemd.
  const low = fakeProc('2466248', GiB24);
  const high = fakeProc(FILE_MAX_UNBOUNDED, GiB24);
  try {
    assert.ok(
      2466248 < fileMaxNeeded(GiB24 * 1024),
      'the boot-time figure is below what memory holds',
    );
    assert.deepEqual(ensureFileTable(log, low), {
      raised: { from: 2466248, to: FILE_MAX_UNBOUNDED },
    });
    assert.equal(read(low), FILE_MAX_UNBOUNDED);
    assert.deepEqual(ensureFileTable(log, high), {});
    assert.equal(read(high).trim(), FILE_MAX_UNBOUNDED);
    // Enough for the memory: an operator's own large figure stays.
    const enough = fakeProc(String(fileMaxNeeded(GiB24 * 1024)), GiB24);
    assert.deepEqual(ensureFileTable(log, enough), {});
    fs.rmSync(enough, { recursive: true });
  } finally {
    fs.rmSync(low, { recursive: true });
    fs.rmSync(high, { recursive: true });
  }
});

test('kept when the operator says so, or when the kernel charges files to no cgroup (nokmem)', () => {
  const GiB24 = 24 * 1024 * 1024;
  const kept = fakeProc('2466248', GiB24);
  const nokmem = fakeProc('2466248', GiB24);
  fs.writeFileSync(path.join(nokmem, 'cmdline'), 'quiet cgroup.memory=nosocket,nokmem ro\n');
  try {
    assert.deepEqual(ensureFileTable(log, kept, true), { kept: 'UNDERLAY_KEEP_FILE_MAX=1' });
    assert.equal(read(kept).trim(), '2466248');
    assert.match(ensureFileTable(log, nokmem).kept ?? '', /nokmem/);
    assert.equal(read(nokmem).trim(), '2466248');
  } finally {
    fs.rmSync(kept, { recursive: true });
    fs.rmSync(nokmem, { recursive: true });
  }
});

test('a table that cannot be read or written is reported, not thrown', () => {
  const missing = path.join(os.tmpdir(), `underlay-no-proc-${process.pid}`);
  const r = ensureFileTable(log, missing);
  assert.match(r.error ?? '', /ENOENT/);
  assert.equal(r.raised, undefined);
});

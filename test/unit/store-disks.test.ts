/**
 * Id ranges and kept disks in the store (server/store/store.ts): a kept disk
 * holds its range while no sandbox uses it, the next sandbox on the same
 * disk gets that range back, two sandboxes never share a disk, and running
 * out of ranges is a typed error the manager answers by dropping the oldest
 * parked disk (sandbox/manager.ts allocateIds).
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { RangesExhausted, Store, type SandboxRecord } from '../../server/store/store';

function record(id: string, k: number): SandboxRecord {
  return {
    id,
    k,
    uidBase: 100000 + 65536 * k,
    state: 'creating',
    initPid: null,
    initStart: null,
    usernsIno: null,
    ownerPid: 1,
    ownerStart: 0,
    ownerKind: 'cli',
    hostname: 'h',
    resources: { sessionDir: '/x', mounts: [], cgroupMode: 'v2', cgroupDirs: [], joinProcs: [] },
    createdAt: 0,
  };
}

test('a kept disk holds its id range between sandboxes, and only one sandbox uses it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-store-'));
  const store = new Store(dir);
  try {
    const disk = { owner: 'ann', name: 'lab', bytes: 1 << 30, id: 'd1' };
    const a = store.reserve((k) => record('a', k), 3, disk);
    assert.equal(a.record.k, 0);
    assert.equal(a.disk?.fresh, true);
    assert.throws(() => store.reserve((k) => record('b', k), 3, disk), /in use by another sandbox/);
    store.remove('a');
    // Parked: a plain sandbox does not get the disk's range...
    const plain = store.reserve((k) => record('p', k), 3);
    assert.equal(plain.record.k, 1);
    assert.equal(plain.disk, undefined);
    // ...the disk's next sandbox does, and finds it not fresh.
    const again = store.reserve((k) => record('c', k), 3, { ...disk, id: 'ignored' });
    assert.equal(again.record.k, 0);
    assert.equal(again.disk?.fresh, false);
    assert.equal(again.disk?.id, 'd1');
    store.remove('c');
    const other = store.reserve((k) => record('q', k), 3);
    assert.equal(other.record.k, 2);
    // Every range held (two sandboxes, one parked disk): a typed error.
    assert.throws(() => store.reserve((k) => record('r', k), 3), RangesExhausted);
    store.removeDisk('d1');
    assert.equal(store.reserve((k) => record('r', k), 3).record.k, 0);
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('two connections (the server and a CLI) never hand out the same id range, and see each other free one', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-store-'));
  const server = new Store(dir);
  const cli = new Store(dir);
  try {
    // Enough parked disks that a create's search goes through the cache.
    for (let i = 0; i < 50; i++) {
      const r = server.reserve((k) => record(`s${i}`, k), 1000, {
        owner: `o${i}`,
        name: 'lab',
        bytes: 1,
        id: `d${i}`,
      });
      assert.equal(r.record.k, i);
      server.remove(`s${i}`); // parked: the disk holds the range
    }
    assert.equal(server.reserve((k) => record('a', k), 1000).record.k, 50);
    assert.equal(cli.reserve((k) => record('b', k), 1000).record.k, 51);
    // The server's next range is past the one the CLI took.
    assert.equal(server.reserve((k) => record('c', k), 1000).record.k, 52);
    // Freed by the other connection: reused by this one, lowest first.
    cli.removeDisk('d7');
    assert.equal(server.reserve((k) => record('d', k), 1000).record.k, 7);
    server.remove('a');
    assert.equal(cli.reserve((k) => record('e', k), 1000).record.k, 50);
    // A record that fails to be made leaves its range free.
    assert.throws(() =>
      server.reserve(() => {
        throw new Error('no record');
      }, 1000),
    );
    assert.equal(server.reserve((k) => record('f', k), 1000).record.k, 53);
    server.remove('f');
    assert.equal(server.reserve((k) => record('g', k), 1000).record.k, 53);
  } finally {
    server.close();
    cli.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the store's narrow reads (keys, disk files, quarantined) agree with the full records", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-store-'));
  const store = new Store(dir);
  try {
    for (const id of ['a', 'b', 'c', 'd']) store.reserve((k) => record(id, k), 10);
    const [a, b, c, d] = store.list();
    assert.ok(a && b && c && d);
    b.resources.disk = '/state/disks/b.ext4';
    c.resources.disk = '/state/disks/c.ext4';
    // Quarantined: being destroyed after a failed teardown. Destroying
    // without a failure (a teardown under way) or failed but not destroying
    // is not.
    c.state = 'destroying';
    c.failures = 2;
    d.state = 'destroying';
    a.failures = 1;
    for (const r of [a, b, c, d]) store.update(r);
    assert.deepEqual(
      store.listKeys(),
      store.list().map((r) => ({ id: r.id, k: r.k })),
    );
    assert.deepEqual(store.listDiskFiles(), ['/state/disks/b.ext4', '/state/disks/c.ext4']);
    assert.deepEqual(
      store.listQuarantined().map((r) => r.id),
      ['c'],
    );
    assert.deepEqual(store.listQuarantined()[0], store.get('c'));
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('disks read a page at a time: every disk once, in rowid order; one owner by itself', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-store-'));
  const store = new Store(dir);
  try {
    // 600 kept disks (parked: their sandboxes removed), of three owners.
    for (let i = 0; i < 600; i++) {
      const disk = { owner: `o${i % 3}`, name: `lab-${i}`, bytes: 1 << 20, id: `d${i}` };
      store.reserve((k) => record(`s${i}`, k), 1000, disk);
      store.remove(`s${i}`);
    }
    const seen: string[] = [];
    let after = 0;
    let pages = 0;
    for (;;) {
      const page = store.listDisksPage(after, 256);
      pages++;
      for (const d of page) {
        assert.ok(d.rowid > after, 'rowids go up');
        after = d.rowid;
        seen.push(d.id);
      }
      if (page.length < 256) break;
    }
    assert.equal(pages, 3);
    assert.deepEqual(
      [...seen].sort(),
      store
        .listDisks()
        .map((d) => d.id)
        .sort(),
    );
    assert.equal(new Set(seen).size, 600);
    const mine = store.listDisksOf('o1');
    assert.equal(mine.length, 200);
    assert.ok(mine.every((d) => d.owner === 'o1'));
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("a class's students who have a lab: a kept disk of it or a live lab session, counted in one query", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-store-'));
  const store = new Store(dir);
  try {
    store.addCohort({
      name: 'c',
      code: 'ACDEFG23',
      tokenHash: '0'.repeat(64),
      labs: ['lab', 'other'],
      closed: false,
      created: 0,
    });
    for (const st of ['ann', 'bo', 'cy', 'di']) store.addMember('c', st, st);
    // Ann: a kept disk of the lab; Bo: a live session; Cy: a disk of another lab; Di: nothing.
    store.reserve((k) => record('s1', k), 10, { owner: 'ann', name: 'lab', bytes: 1, id: 'd1' });
    store.remove('s1');
    store.saveLabSession('bo', 'lab', 'sess-bo');
    store.reserve((k) => record('s2', k), 10, { owner: 'cy', name: 'other', bytes: 1, id: 'd2' });
    store.remove('s2');
    // Someone outside the class with the lab does not count.
    store.saveLabSession('eve', 'lab', 'sess-eve');
    assert.equal(store.countMembersWithLab('c', 'lab'), 2);
    assert.equal(store.countMembersWithLab('c', 'other'), 1);
    assert.equal(store.countMembersWithLab('nope', 'lab'), 0);
  } finally {
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

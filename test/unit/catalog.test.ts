/**
 * `serve --dev`'s lab reloading (server/labs/catalog.ts): a lab folder
 * copied in appears, one removed disappears, and directories created and
 * deleted under the watcher's feet never take the server down.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LabCatalog } from '../../server/labs/catalog';
import { createLogger } from '../../server/util/logger';
import { REPO } from '../helpers/env';

async function until(what: string, pred: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('dev mode: a lab copied in is loaded and one removed is dropped; churn under the watcher is survived', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-catalog-'));
  const warnings: string[] = [];
  const catalog = new LabCatalog(
    dir,
    'v2',
    createLogger('warn', (l) => warnings.push(l)),
  );
  try {
    catalog.watch();
    assert.equal(catalog.labs.size, 0);
    // A folder copied in as a whole: its directories exist before any
    // watcher could be on them (Node 20's recursive fs.watch can miss these).
    for (let i = 0; i < 5; i++) {
      fs.cpSync(path.join(REPO, 'labs', 'uts-hostname'), path.join(dir, `copy${i}`), {
        recursive: true,
      });
      await until(`copy${i} to be loaded`, () => catalog.labs.size === 1);
      fs.rmSync(path.join(dir, `copy${i}`), { recursive: true });
      await until(`copy${i} to be dropped`, () => catalog.labs.size === 0);
    }
    // Trees created and deleted by another process while the watcher works:
    // Node 20's recursive watch emits an 'error' nobody listens to (and so
    // throws, ending the process) when a directory vanishes between its
    // event and its scan.
    const churn = spawn(
      'bash',
      [
        '-c',
        'for i in $(seq 400); do mkdir -p d/a/b/c d/e/f; touch d/a/b/c/x d/e/f/y d/a/z; rm -rf d; done',
      ],
      { cwd: dir, stdio: 'ignore' },
    );
    const status = await new Promise<number | null>((r) => churn.on('exit', r));
    assert.equal(status, 0);
    // Still watching: a lab added after the churn is loaded.
    fs.cpSync(path.join(REPO, 'labs', 'uts-hostname'), path.join(dir, 'after'), {
      recursive: true,
    });
    await until('the lab added after the churn', () => catalog.labs.size === 1);
    assert.deepEqual(catalog.problems, []);
    assert.deepEqual(
      warnings.filter((w) => /cannot watch/.test(w)),
      [],
    );
  } finally {
    catalog.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

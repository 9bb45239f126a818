/**
 * What a long-running server must not accumulate: zombies and sandbox inits
 * left in the process table after terminals and sessions end. The test does
 * not reap anything itself; it only waits (bounded) for the server's own
 * housekeeping to leave nothing behind.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe } from 'node:test';
import { timeScale } from '../../server/config';
import { SessionManager } from '../../server/sessions/session-manager';
import { createLogger } from '../../server/util/logger';
import { pidsOwnedByRange, sleep, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** Zombie children of this process (as a subreaper it inherits sandbox processes). */
function ourZombies(): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (rest[0] === 'Z' && Number(rest[1]) === process.pid) out.push(d);
    } catch {
      // gone
    }
  }
  return out;
}

async function settle(done: () => boolean): Promise<void> {
  // At most 5 s, times the host's slowness (the emulated guest's 4).
  for (let i = 0; i < 250 * timeScale() && !done(); i++) await sleep(20);
}

describe('server housekeeping', () => {
  sysTest(
    'terminals and sessions opened and ended leave no zombie and no sandbox init',
    SYSTEM_NEEDS,
    async () => {
      // The VM tier runs every system test file in one process: zombies an
      // earlier file's manager left (other uid ranges) are not this test's.
      const earlier = new Set(ourZombies());
      const mine = () => ourZombies().filter((z) => !earlier.has(z));
      const m = testManager();
      const sessions = new SessionManager(m, createLogger('error'));
      const ranges: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c = await sessions.create();
        const s = sessions.get(c.session);
        assert.ok(s);
        ranges.push(s.sandbox.record.uidBase);
        for (let j = 0; j < 3; j++) {
          const t = sessions.openTerminal(s, { cols: 80, rows: 24 });
          // The shell is up (it printed its prompt) before the terminal is closed.
          await settle(() => t.replay.endOffset > 0);
          await sessions.closeTerminal(s, t.id);
        }
        // One terminal still open when the session ends.
        const last = sessions.openTerminal(s, { cols: 80, rows: 24 });
        await settle(() => last.replay.endOffset > 0);
        await sessions.end(c.session);
      }
      await settle(
        () => mine().length === 0 && ranges.every((b) => pidsOwnedByRange(b).length === 0),
      );
      assert.deepEqual(mine(), [], 'zombies left under the server');
      for (const b of ranges)
        assert.deepEqual(pidsOwnedByRange(b), [], `processes left in range ${b}`);
    },
    { timeout: 120_000 },
  );

  // 50 creates at once, five rounds, on the host. An emulated guest
  // (UNDERLAY_TIME_SCALE 4) runs one round of 20: still every create racing
  // the others on its kernel, at ~25 s instead of 60 of the VM tier's budget
  // (each create and teardown costs ~1 s of CPU there).
  const rounds = Math.max(1, Math.round(5 / timeScale() ** 2));
  const herd = timeScale() > 1 ? 20 : 50;
  sysTest(
    `${herd} concurrent creates, ${rounds} round(s): none fails`,
    SYSTEM_NEEDS,
    async () => {
      const m = testManager();
      const failures: string[] = [];
      for (let round = 0; round < rounds; round++) {
        const made = await Promise.allSettled(
          Array.from({ length: herd }, () => m.create({ hostname: `r${round}` })),
        );
        for (const r of made) if (r.status === 'rejected') failures.push(String(r.reason));
        await Promise.all(
          made.flatMap((r) => (r.status === 'fulfilled' ? [m.teardown(r.value)] : [])),
        );
      }
      assert.deepEqual(failures, []);
    },
    { timeout: 300_000 },
  );
});

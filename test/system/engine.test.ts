/**
 * The lab engine on a real sandbox with the example lab: failed check, a
 * static and a state-based hint, a latched pass whose message feeds the next
 * step, and progress that survives a restart (a new engine on the same DB).
 */
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe } from 'node:test';
import { LabEngine } from '../../server/labs/engine';
import { labList } from '../../server/transport/lab-api';
import { loadLabs } from '../../server/labs/loader';
import { Store } from '../../server/store/store';
import { REPO, testConfig, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

describe('lab engine', () => {
  sysTest(
    'check, hints, latch, recorded values and persistence across a restart',
    SYSTEM_NEEDS,
    async () => {
      const { labs, problems } = loadLabs([path.join(REPO, 'labs', 'uts-hostname')]);
      assert.deepEqual(problems, []);
      const map = new Map(labs.map((l) => [l.lab.metadata.id, l]));
      const m = testManager();
      const engine = new LabEngine(m.store, map, m.driver.mode);
      const owner = `student-${process.pid}`;
      const sb = await m.create({ hostname: 'lab' });
      try {
        const c1 = await engine.check(owner, sb, 'uts-hostname', 'private-hostname');
        assert.equal(c1.passed, false);
        assert.match(c1.message, /No process is in a UTS namespace whose hostname is lab-box/);
        assert.equal(c1.state.steps['private-hostname']?.attempts, 1);

        // Hint pressed early, twice: the text hint, then nothing - and the state
        // hint written for the mistake is not used up by those presses.
        const h1 = await engine.hint(owner, sb, 'uts-hostname', 'private-hostname');
        assert.match(h1.hint ?? '', /unshare --uts bash/);
        assert.deepEqual([h1.kind, h1.shown, h1.total], ['text', 1, 1]);
        const h1b = await engine.hint(owner, sb, 'uts-hostname', 'private-hostname');
        assert.equal(h1b.hint, undefined, 'nothing to say yet');
        assert.equal(engine.state(owner, 'uts-hostname').steps['private-hostname']?.hintsShown, 1);
        await sb.exec([
          'bash',
          '-c',
          // Until the exec: the hostname is set by then (never a fixed wait).
          "unshare --uts sh -c 'hostname lab-b0x; exec sleep 600' >/dev/null 2>&1 & " +
            "until pgrep -xf 'sleep 600' >/dev/null; do sleep 0.05; done",
        ]);
        const h2 = await engine.hint(owner, sb, 'uts-hostname', 'private-hostname');
        assert.match(
          h2.hint ?? '',
          /named lab-b0x/,
          'the state-based hint points at what is wrong, however early Hint was pressed',
        );
        assert.equal(h2.kind, 'state');
        const h2b = await engine.hint(owner, sb, 'uts-hostname', 'private-hostname');
        assert.match(h2b.hint ?? '', /named lab-b0x/, 'still true: said again');
        assert.equal(
          engine.state(owner, 'uts-hostname').steps['private-hostname']?.hintsShown,
          2,
          'a repeat is not counted',
        );

        await sb.exec([
          'bash',
          '-c',
          // Until the exec: the hostname is set by then (never a fixed wait).
          "unshare --uts sh -c 'hostname lab-box; exec sleep 601' >/dev/null 2>&1 & " +
            "until pgrep -xf 'sleep 601' >/dev/null; do sleep 0.05; done",
        ]);
        const c2 = await engine.check(owner, sb, 'uts-hostname', 'private-hostname');
        assert.equal(c2.passed, true);
        // The student reads a sentence; later steps read the inode (pass_value).
        assert.match(c2.message, /is in UTS namespace uts:\[\d+\], named lab-box/);
        const inode = c2.state.steps['private-hostname']?.value as string;
        assert.match(inode, /^\d+$/, 'the recorded value is the namespace inode');
        assert.ok(c2.message.includes(`uts:[${inode}]`));
        assert.equal(c2.state.current, 1);

        // The state changes (the shell exits); the pass stays latched.
        await sb.exec(['bash', '-c', 'pkill -f "sleep 601"; sleep 0.2']);
        const c3 = await engine.check(owner, sb, 'uts-hostname', 'private-hostname');
        assert.equal(c3.passed, true);
        assert.equal(c3.latched, true);

        // A restart: a new store connection and engine see the same progress,
        // and step 2 reads the recorded inode.
        const store2 = new Store(testConfig().stateDir);
        const engine2 = new LabEngine(store2, map, m.driver.mode);
        const st = engine2.state(owner, 'uts-hostname');
        assert.equal(st.steps['private-hostname']?.passed, true);
        assert.equal(st.steps['private-hostname']?.message, c2.message);
        const c4 = await engine2.check(owner, sb, 'uts-hostname', 'namespace-dies');
        assert.equal(c4.passed, true, c4.message);
        assert.match(c4.message, new RegExp(`UTS namespace ${inode} is gone`));
        assert.equal(c4.state.current, 2);
        assert.ok(store2.events(owner, 'uts-hostname').some((e) => e.kind === 'check-pass'));

        const reset = engine2.resetLab(owner, 'uts-hostname');
        assert.equal(reset.current, 0);
        assert.equal(reset.steps['private-hostname']?.passed, false);
        store2.close();
      } finally {
        await m.teardown(sb.record);
      }
    },
  );

  sysTest(
    'Skip: a skip is not a pass; "do it for me" applies the solution, and later steps read its value',
    SYSTEM_NEEDS,
    async () => {
      const { labs } = loadLabs([path.join(REPO, 'labs', 'uts-hostname')]);
      const map = new Map(labs.map((l) => [l.lab.metadata.id, l]));
      const m = testManager();
      const engine = new LabEngine(m.store, map, m.driver.mode);
      const owner = `skipper-${process.pid}`;
      const sb = await m.create({ hostname: 'lab' });
      try {
        const applied = await engine.applySolution(owner, sb, 'uts-hostname', 'private-hostname');
        assert.equal(applied.ok, true, applied.output);
        assert.match(applied.value ?? '', /^\d+$/, "the check's value after the solution");
        const st = engine.skip(owner, 'uts-hostname', 'private-hostname', true, applied.value);
        const s1 = st.steps['private-hostname'];
        assert.deepEqual([s1?.passed, s1?.skipped], [false, true]);
        assert.equal(
          // (As a class's lab: the example lab is not in the open catalog.)
          labList({ labs: map, problems: [], mode: m.driver.mode } as never, engine, owner, {
            cohorts: ['c'],
            labs: new Set(['uts-hostname']),
            classesOnly: false,
          }).labs[0]?.progress.passed,
          0,
          'a skipped step is not counted as passed',
        );
        // The next step's check reads the skipped step's value (the namespace the solution made).
        const c = await engine.check(owner, sb, 'uts-hostname', 'namespace-dies');
        assert.equal(c.passed, false);
        assert.match(c.message, new RegExp(`Still alive in UTS namespace ${applied.value}`));
        // Skipping without applying leaves no value: the next check says to do the step.
        const other = `${owner}-plain`;
        engine.skip(other, 'uts-hostname', 'private-hostname');
        const c2 = await engine.check(other, sb, 'uts-hostname', 'namespace-dies');
        assert.match(c2.message, /Do the first step first/);
      } finally {
        await m.destroy(sb.id);
      }
    },
  );
});

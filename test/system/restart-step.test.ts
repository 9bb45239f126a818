/**
 * Starting a step over, over real HTTP against `underlay serve`: a fresh
 * sandbox at the start of a step, built by the lab's setup and the earlier
 * steps' solutions, whose recorded values ($STEP_<id>_OUT) belong to the new
 * sandbox (the later steps' checks pass against it); the same for an
 * instructor moving a student to a step; and a failed rebuild that names
 * the step and changes no progress.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { LabEngine } from '../../server/labs/engine';
import { loadLabs } from '../../server/labs/loader';
import { SandboxError } from '../../server/sandbox/index';
import type { LabProgress, LabSession } from '../../server/protocol/index';
import { startServer, type Server } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { cli, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const LAB = 'ns-files-nsenter';

describe('start a step over', () => {
  let srv: Server | undefined;
  let setupError: unknown;
  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      srv = await startServer();
    } catch (e) {
      setupError = e;
    }
  });
  after(async () => {
    await srv?.stop();
  });
  const server = (): Server => {
    if (!srv) throw setupError ?? new Error('server not started');
    return srv;
  };

  sysTest(
    "a fresh sandbox at step 3 whose earlier values are the new sandbox's; an instructor can do the same",
    SYSTEM_NEEDS,
    async () => {
      const s = server();
      const name = `restart-${Date.now().toString(36)}`;
      const made = await cli(['cohort', 'create', name, '--labs', LAB]);
      assert.equal(made.code, 0, made.stderr);
      const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
      const token = /#token=(\S+)/.exec(made.stdout)?.[1] as string;
      const ann = new CookieClient(s.url);
      await ann.ok('POST', '/api/cohorts/join', { code, name: 'Ann' });
      const first = (await ann.ok('POST', `/api/labs/${LAB}/session`)) as unknown as LabSession;

      // Step 1 done for real (with its solution applied), then start step 3 over.
      const sk = await ann.ok('POST', `/api/labs/${LAB}/steps/find-it/skip`, { apply: true });
      const oldValue = (sk as unknown as LabProgress).steps['find-it']?.value;
      assert.match(oldValue ?? '', /^\d+ \d+$/, 'step 1 recorded "PID UTS-INODE"');
      const r = await ann.call('POST', `/api/labs/${LAB}/steps/join-it/restart`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const { progress, session } = r.body as { progress: LabProgress; session: LabSession };
      assert.notEqual(session.session, first.session, 'a new sandbox');
      assert.match(session.notice ?? '', /start of step 3 .*2 steps before it were done for you/);
      assert.equal(progress.current, 2, 'the student is at step 3');
      for (const id of ['find-it', 'what-it-shares'])
        assert.equal(progress.steps[id]?.skipped, true, `${id} counts as done for them`);
      assert.equal(progress.steps['join-it']?.attempts, 0, 'step 3 starts over');
      const newValue = progress.steps['find-it']?.value as string;
      assert.match(newValue, /^\d+ \d+$/);
      assert.notEqual(
        newValue.split(' ')[1],
        (oldValue as string).split(' ')[1],
        "the recorded UTS inode is the new sandbox's mystery, not the old one's",
      );
      // The old sandbox is gone: its session id is no longer a lab session.
      const again = (await ann.ok('POST', `/api/labs/${LAB}/session`)) as unknown as LabSession;
      assert.equal(again.session, session.session, 'the fresh sandbox is the one resumed');

      // The next steps work against the new sandbox's values: step 4's check
      // compares the mounted namespace with the recorded inode.
      for (const step of ['join-it', 'keep-alive']) {
        const a = (await ann.ok('POST', `/api/labs/${LAB}/steps/${step}/skip`, {
          apply: true,
        })) as unknown as { applied: { ok: boolean; output: string } } & LabProgress;
        assert.equal(a.applied.ok, true, `${step}: ${a.applied.output}`);
        assert.ok(a.steps[step]?.value, `${step}'s check passed in the new sandbox`);
      }

      // The instructor moves Ann back to step 2: another fresh sandbox.
      const inst = async (path: string) => {
        const res = await fetch(`${s.url}/api/instructor/cohorts/${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, origin: s.url },
        });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      const view = (await (
        await fetch(`${s.url}/api/instructor/cohorts/${name}`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).json()) as { students: { key: string; name: string }[] };
      const key = view.students.find((x) => x.name === 'Ann')?.key as string;
      const moved = await inst(`${name}/students/${key}/labs/${LAB}/steps/what-it-shares/restart`);
      assert.deepEqual(moved, {
        status: 200,
        body: { restarted: true, step: 'what-it-shares', current: 1 },
      });
      const back = (await ann.ok('POST', `/api/labs/${LAB}/session`)) as unknown as LabSession;
      assert.notEqual(back.session, session.session, 'Ann is in the sandbox the instructor made');
      assert.match(back.notice ?? '', /Your instructor moved you to the start of step 2/);
      const p = (await ann.ok('GET', `/api/labs/${LAB}`)).progress as LabProgress;
      assert.equal(p.current, 1);
      assert.equal(p.steps['keep-alive']?.skipped, false, 'later steps start over');
      assert.equal(p.steps['keep-alive']?.passed, false);
      // Refused: an unknown step, and without the token.
      assert.equal(
        (await inst(`${name}/students/${key}/labs/${LAB}/steps/nope/restart`)).status,
        404,
      );
      const noTok = await fetch(
        `${s.url}/api/instructor/cohorts/${name}/students/${key}/labs/${LAB}/steps/find-it/restart`,
        { method: 'POST', headers: { origin: s.url } },
      );
      assert.equal(noTok.status, 403);
      await ann.call('DELETE', `/api/labs/${LAB}/session`);
    },
  );

  sysTest(
    'a rebuild that fails on the way names the step, says why, and changes no progress',
    SYSTEM_NEEDS,
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-rebuild-'));
      fs.writeFileSync(
        path.join(dir, 'lab.yaml'),
        [
          'apiVersion: underlay.dev/v1',
          'kind: Lab',
          'metadata: { id: rebuild-fails, title: T, summary: S, duration: 5, difficulty: beginner }',
          'steps:',
          '  - { id: a, title: First, instructions: x, check: { script: pass ok }, solution: "echo nope; exit 3" }',
          '  - { id: b, title: Second, instructions: x, check: { script: fail no }, solution: "true" }',
          '',
        ].join('\n'),
      );
      const { labs, problems } = loadLabs([dir]);
      assert.deepEqual(problems, []);
      const m = testManager();
      const engine = new LabEngine(
        m.store,
        new Map(labs.map((l) => [l.lab.metadata.id, l])),
        m.driver.mode,
      );
      const owner = `rebuild-${process.pid}`;
      const sb = await m.create({ hostname: 'lab' });
      try {
        await assert.rejects(engine.rebuildTo(sb, 'rebuild-fails', 'b'), (e: unknown) => {
          assert.ok(e instanceof SandboxError);
          assert.equal(e.step, 'lab-setup');
          assert.match(
            e.message,
            /to step "Second": step "First" could not be done \(exit 3\): nope/,
          );
          assert.match(e.hint ?? '', /Reset the lab/);
          return true;
        });
        const st = engine.state(owner, 'rebuild-fails');
        assert.equal(st.current, 0);
        assert.equal(st.steps['a']?.skipped, false, 'nothing was recorded');
      } finally {
        await m.teardown(sb.record);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

/**
 * Starting a step over, over real HTTP against `underlay serve`: a fresh
 * sandbox at the start of a step, built by the lab's setup and the earlier
 * steps' code blocks typed into its terminals (as Run would), whose recorded
 * values ($STEP_<id>_OUT) belong to the new sandbox (the later steps' checks
 * pass against it) and whose shells are where the text left them; the same
 * for an instructor moving a student to a step; and a replay that fails,
 * naming the step and changing no progress.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import type { LabProgress, LabSession } from '../../server/protocol/index';
import { serverSuite, startServer } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { TermClient } from '../helpers/term-client';
import { cli } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest, type Need } from '../helpers/requires';

const LAB = 'ns-files-nsenter';
// Admission counting and a replay's error: the server's logic, the host tier's alone.
const SERVER_LOGIC: Need[] = [...SYSTEM_NEEDS, 'any-kernel'];

describe('start a step over', () => {
  const server = serverSuite(before, after);

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
      // (Not compared with the old value: the kernel reuses a freed namespace's
      // inode number, and did in the emulated guest. That the values are this
      // sandbox's shows below: later checks compare them with its kernel state.)
      // The shells are where the text left them: step 2's block set $P in T1.
      const t1 = session.terminals.find((t) => t.name === 'T1')?.term as string;
      const sock = await TermClient.connect(s.url, {
        session: session.session,
        token: session.token,
      });
      assert.equal((await sock.open({ term: t1, cols: 100, rows: 30 })).ok, true);
      assert.match(await sock.run(t1, 'echo "P=[$P] $(cat /proc/$P/comm)"'), /P=\[\d+\] sleep/);
      sock.close();
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
    "an instructor's moves count as each student's starts, not as one address for the whole class",
    SERVER_LOGIC,
    async () => {
      // Two live sandboxes per address: the class's parked students, moved
      // by their instructor, were all counted as one address ("instructor").
      const other = await startServer(undefined, {
        UNDERLAY_PER_CLIENT: '2',
        UNDERLAY_RATES: 'client-start=50/50',
      });
      const name = `moves-${Date.now().toString(36)}`;
      const students: CookieClient[] = [];
      try {
        const made = await cli(['cohort', 'create', name, '--labs', 'uts-hostname']);
        assert.equal(made.code, 0, made.stderr);
        const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
        const token = /#token=(\S+)/.exec(made.stdout)?.[1] as string;
        for (const who of ['Ann', 'Bo', 'Cy']) {
          const st = new CookieClient(other.url);
          students.push(st);
          await st.ok('POST', '/api/cohorts/join', { code, name: who });
          await st.ok('POST', '/api/labs/uts-hostname/session');
          await st.ok('DELETE', '/api/labs/uts-hostname/session'); // parked
        }
        const auth = { authorization: `Bearer ${token}`, origin: other.url };
        const view = (await (
          await fetch(`${other.url}/api/instructor/cohorts/${name}`, { headers: auth })
        ).json()) as { students: { key: string; name: string }[] };
        for (const st of view.students) {
          const r = await fetch(
            `${other.url}/api/instructor/cohorts/${name}/students/${st.key}/labs/uts-hostname/steps/private-hostname/restart`,
            { method: 'POST', headers: auth },
          );
          assert.equal(r.status, 200, `${st.name}: ${await r.text()}`);
        }
      } finally {
        for (const st of students) await st.call('DELETE', '/api/labs/uts-hostname/session');
        await cli(['cohort', 'close', name]);
        await other.stop();
      }
    },
  );

  sysTest(
    'a replay that fails on the way names the step, says why, and changes no progress',
    SERVER_LOGIC,
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-replay-'));
      fs.mkdirSync(path.join(dir, 'replay-fails'));
      fs.writeFileSync(
        path.join(dir, 'replay-fails', 'lab.yaml'),
        [
          'apiVersion: underlay.dev/v1',
          'kind: Lab',
          'metadata: { id: replay-fails, title: T, summary: S, duration: 5, difficulty: beginner }',
          'steps:',
          '  - id: a',
          '    title: First',
          '    instructions: "```sh\\necho typed-$((6*7))\\n```"',
          '    check: { script: "fail the text does not do it" }',
          '    solution: "true"',
          '  - { id: b, title: Second, instructions: x, check: { script: fail no }, solution: "true" }',
          '',
        ].join('\n'),
      );
      const other = await startServer(undefined, { UNDERLAY_LABS_DIR: dir });
      try {
        const bob = new CookieClient(other.url);
        await bob.ok('POST', '/api/labs/replay-fails/session');
        const r = await bob.call('POST', '/api/labs/replay-fails/steps/b/restart');
        assert.equal(r.status, 503, JSON.stringify(r.body));
        assert.match(
          String(r.body.error),
          /to step "Second": step "First" did not pass when typed in: .*the text does not do it/,
        );
        assert.match(String(r.body.hint), /progress is unchanged/);
        const p = (await bob.ok('GET', '/api/labs/replay-fails')).progress as LabProgress;
        assert.equal(p.current, 0);
        assert.equal(p.steps['a']?.skipped, false, 'nothing was recorded');
        // The instructor's Move to step fails the same way: a 503 that says why, not a 500.
        const name = `replay-${Date.now().toString(36)}`;
        const made = await cli(['cohort', 'create', name, '--labs', 'replay-fails'], {
          env: { UNDERLAY_LABS_DIR: dir },
        });
        assert.equal(made.code, 0, made.stderr);
        const code = /code=([A-Z0-9-]+)/.exec(made.stdout)?.[1] as string;
        const token = /#token=(\S+)/.exec(made.stdout)?.[1] as string;
        await bob.ok('POST', '/api/cohorts/join', { code, name: 'Bob' });
        const auth = { authorization: `Bearer ${token}` };
        const view = (await (
          await fetch(`${other.url}/api/instructor/cohorts/${name}`, { headers: auth })
        ).json()) as { students: { key: string }[] };
        const moved = await fetch(
          `${other.url}/api/instructor/cohorts/${name}/students/${view.students[0]?.key}/labs/replay-fails/steps/b/restart`,
          { method: 'POST', headers: { ...auth, origin: other.url } },
        );
        const body = (await moved.json()) as { error: string; step?: string };
        assert.equal(moved.status, 503, JSON.stringify(body));
        assert.match(body.error, /step "First" did not pass when typed in/);
        assert.equal(body.step, 'lab-setup');
        await bob.call('DELETE', '/api/labs/replay-fails/session');
        assert.equal((await cli(['cohort', 'close', name])).code, 0);
      } finally {
        await other.stop();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

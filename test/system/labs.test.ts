/**
 * The lab format and `underlay test`: golden loader errors, the repository's
 * labs and schema, and a run over deliberately bad labs (a check that passes
 * before the solution, one that hangs, one that floods, a failing solution).
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { timeScale } from '../../server/config';
import {
  ARTIFACTS,
  CLI,
  REPO,
  cli,
  pidsOwnedByRange,
  sleep,
  tempDir,
  testEnv,
  testManager,
  TEST_UID_BASE,
} from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const FIX = path.join(REPO, 'test', 'fixtures', 'labs');

describe('labs', () => {
  for (const c of fs.readdirSync(path.join(FIX, 'invalid')).sort()) {
    test(`loader golden case: ${c}`, async () => {
      const dir = path.join('test', 'fixtures', 'labs', 'invalid', c);
      const r = await cli(['validate', dir], { cwd: REPO });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, fs.readFileSync(path.join(REPO, dir, 'expected-error.txt'), 'utf8'));
    });
  }

  test('several broken labs are reported at once', async () => {
    const r = await cli(['validate', path.join('test', 'fixtures', 'labs', 'invalid')], {
      cwd: REPO,
    });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /17 problems in 10 files; 0 labs valid/);
    // The learning path's fields are checked too.
    assert.match(
      r.stderr,
      /path-correct\/lab\.yaml:15:16: steps\[0\]\.predict\.correct: "c" is not one of the choices \("a", "b"\)/,
    );
    assert.match(
      r.stderr,
      /path-requires\/lab\.yaml:9:3: metadata\.requires\[0\]: no lab "ns-pdi" here/,
    );
  });

  test('a lab outside labs/ whose id a repository lab uses is reported where it is', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-clash-'));
    try {
      fs.cpSync(path.join(REPO, 'labs', 'uts-hostname'), path.join(dir, 'copy'), {
        recursive: true,
      });
      const r = await cli(['validate', path.join(dir, 'copy')], { cwd: REPO });
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(
        r.stderr,
        /copy\/lab\.yaml:1:1: metadata\.id: lab id "uts-hostname" is taken by the repository's labs\/uts-hostname\/lab\.yaml/,
      );
      // Renamed, it is fine.
      const f = path.join(dir, 'copy', 'lab.yaml');
      fs.writeFileSync(f, fs.readFileSync(f, 'utf8').replace('id: uts-hostname', 'id: my-draft'));
      const ok = await cli(['validate', path.join(dir, 'copy')], { cwd: REPO });
      assert.equal(ok.code, 0, ok.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the repository's labs are valid and the editor schema is fresh", async () => {
    const v = await cli(['validate']);
    assert.equal(v.code, 0, v.stderr);
    const s = await cli(['schema', '--check']);
    assert.equal(s.code, 0, s.stderr);
    for (const d of fs.readdirSync(path.join(REPO, 'labs'))) {
      const f = path.join(REPO, 'labs', d, 'lab.yaml');
      if (fs.existsSync(f))
        assert.match(
          fs.readFileSync(f, 'utf8'),
          /^# yaml-language-server: \$schema=\.\.\/lab\.schema\.json/,
          `${d} does not point editors at the schema`,
        );
    }
  });

  sysTest(
    'underlay test catches bad labs, reports each clearly, continues, and leaves nothing running',
    SYSTEM_NEEDS,
    async () => {
      const out = path.join(ARTIFACTS, 'bad-runs.junit.xml');
      fs.mkdirSync(path.dirname(out), { recursive: true });
      const r = await cli(['test', path.join(FIX, 'bad-runs'), '--reporter', 'junit', '-o', out], {
        timeoutMs: 120_000,
      });
      assert.equal(r.code, 1, 'a failing lab must fail the run');
      const xml = fs.readFileSync(out, 'utf8');
      execFileSync('python3', [
        '-c',
        'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])',
        out,
      ]); // well-formed
      const failure = (lab: string) =>
        new RegExp(
          `<testsuite name="${lab}"[^>]*failures="1"[\\s\\S]*?<failure message="([^"]*)">([^<]*)</failure>`,
        ).exec(xml);
      assert.match(failure('passes-before')?.[2] ?? '', /the check PASSED before the solution/);
      // 2 s in the lab, times UNDERLAY_TIME_SCALE on a slow host (the VM tier).
      assert.match(failure('hangs')?.[2] ?? '', new RegExp(`killed after ${2 * timeScale()}s`));
      // A hang is an error in every phase, not a correct failure before the solution.
      assert.match(failure('hangs')?.[2] ?? '', /did not answer before the solution/);
      assert.match(failure('floods')?.[2] ?? '', /output truncated/);
      assert.ok(
        (failure('floods')?.[2] ?? '').length < 10_000,
        'a flooding check must not flood the report',
      );
      assert.match(failure('bad-solution')?.[2] ?? '', /the solution exited 1: trying/);
      assert.match(
        failure('wrong-says')?.[2] ?? '',
        /the check failed, but its message does not say &quot;\/tmp\/done has the wrong mode&quot; \(the near miss's `says`\): &quot;There is no \/tmp\/done yet\.&quot;/,
      );
      assert.match(
        xml,
        /<testsuite name="good" tests="1" failures="0"/,
        'the run must continue to the other labs',
      );
      assert.match(r.stderr, /labs: 1 passed, 5 failed/);
      // Nothing left: no sandbox recorded, no process in the test uid ranges.
      assert.equal(testManager().store.list().length, 0);
      await testManager().reaper.collectZombies();
      for (let k = 0; k < 5; k++) assert.deepEqual(pidsOwnedByRange(TEST_UID_BASE + 65536 * k), []);
    },
    { timeout: 150_000 },
  );

  sysTest(
    '--walkthrough types the lab text into real terminals: a typo in the text fails although the solution passes',
    SYSTEM_NEEDS,
    async () => {
      const dir = path.join(FIX, 'walkthrough');
      const plain = await cli(['test', dir], { timeoutMs: 60_000 });
      assert.equal(plain.code, 0, `the solutions pass: ${plain.stderr}`);
      const walk = await cli(['test', dir, '--walkthrough'], { timeoutMs: 60_000 });
      assert.equal(walk.code, 1, 'the typo must fail the walkthrough');
      // The failure shows what the terminal showed: the mistyped command and its effect.
      assert.match(walk.stdout, /private-hostname[\s\S]*the check failed after typing/);
      assert.match(walk.stdout, /hostname lab-bx[\s\S]*lab-bx/);
      assert.equal(testManager().store.list().length, 0, 'the walkthrough session was ended');
    },
    { timeout: 150_000 },
  );

  sysTest(
    'sandbox.files are laid into the sandbox before setup, with their modes',
    SYSTEM_NEEDS,
    async () => {
      const dir = tempDir('underlay-files-');
      fs.mkdirSync(path.join(dir, 'files', 'sub'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'files', 'hello.sh'), '#!/bin/sh\necho hello from a file\n', {
        mode: 0o755,
      });
      const blob = Buffer.alloc(300_000);
      for (let i = 0; i < blob.length; i++) blob[i] = (i * 7919) & 0xff;
      fs.writeFileSync(path.join(dir, 'files', 'sub', 'blob.bin'), blob);
      const sum = execFileSync('sha256sum', [path.join(dir, 'files', 'sub', 'blob.bin')])
        .toString()
        .split(' ')[0];
      fs.writeFileSync(
        path.join(dir, 'lab.yaml'),
        `apiVersion: underlay.dev/v1
kind: Lab
metadata: {id: files-lab, title: Files, summary: Files land in the sandbox., duration: 1, difficulty: beginner}
sandbox:
  files:
    - {from: files, to: /opt/lab}
    - {from: files/hello.sh, to: /usr/local/bin/hello, mode: '0700'}
setup: '[ -x /opt/lab/hello.sh ]'
steps:
  - id: files
    title: Files
    check:
      script: |
        # Checks see the image's /usr (the trusted view): the student's is under /proc/1/root.
        H=/proc/1/root/usr/local/bin/hello
        [ "$(sh $H)" = "hello from a file" ] || fail "hello: $(sh $H 2>&1)"
        [ "$(stat -c %a $H)" = 700 ] || fail "mode $(stat -c %a $H)"
        [ "$(sha256sum /opt/lab/sub/blob.bin | cut -d' ' -f1)" = ${sum} ] || fail "blob differs"
        [ -f /tmp/done ] || fail "not yet"
        pass ok
    solution: touch /tmp/done
`,
      );
      const r = await cli(['test', dir], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      // A path outside the lab folder is refused at load time.
      fs.writeFileSync(
        path.join(dir, 'lab.yaml'),
        fs.readFileSync(path.join(dir, 'lab.yaml'), 'utf8').replace('from: files,', 'from: ../..,'),
      );
      const v = await cli(['validate', dir]);
      assert.equal(v.code, 1);
      assert.match(
        v.stderr,
        /lab\.yaml:\d+:\d+: sandbox\.files\[0\]\.from: file not found: \.\.\/\.\. .*must stay inside the lab folder/,
      );
    },
    { timeout: 150_000 },
  );

  sysTest(
    'sandbox.packages: a lab gets its own image with the extra package; the base image stays without it',
    [...SYSTEM_NEEDS, 'apt-network'],
    async () => {
      const dir = path.join(FIX, 'packages');
      const images = path.join(os.tmpdir(), 'underlay-test-images-pkg');
      const env = { UNDERLAY_IMAGES_DIR: images };
      // The base image is shared with the other tests: link it instead of building it again.
      const base = JSON.parse(
        execFileSync(process.execPath, [CLI, 'rootfs', 'status', '--json'], {
          env: testEnv(),
        }).toString(),
      ) as { id: string; rootfs: string };
      fs.mkdirSync(images, { recursive: true });
      if (!fs.existsSync(path.join(images, base.id)))
        fs.symlinkSync(path.dirname(base.rootfs), path.join(images, base.id));
      const before = await cli(['test', dir], { env, timeoutMs: 60_000 });
      if (!fs.existsSync(path.join(images, 'built-jq'))) {
        assert.equal(before.code, 1, 'without its image the lab cannot run');
        assert.match(
          before.stdout,
          /no image with the lab's extra packages \(jq\).*rootfs build --labs/,
        );
      }
      const build = await cli(['rootfs', 'build', '--quiet', '--labs', dir], {
        env,
        timeoutMs: 600_000,
      });
      assert.equal(build.code, 0, build.stdout + build.stderr);
      assert.match(build.stdout, /base image \w+ is up to date/);
      assert.match(build.stdout, /image with jq \w+/);
      fs.writeFileSync(path.join(images, 'built-jq'), '');
      const after = await cli(['test', dir], { env, timeoutMs: 60_000 });
      assert.equal(after.code, 0, after.stdout + after.stderr);
      // The same check in a base sandbox: no jq there.
      const plain = await cli(['sandbox', 'run', '--', 'sh', '-c', 'command -v jq || echo none'], {
        env,
      });
      assert.match(plain.stdout, /none/);
    },
    { timeout: 700_000 },
  );

  sysTest(
    'underlay serve --dev reloads labs on change and serves validation errors instead of crashing',
    SYSTEM_NEEDS,
    async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-labs-'));
      fs.cpSync(path.join(REPO, 'labs', 'uts-hostname'), path.join(dir, 'uts-hostname'), {
        recursive: true,
      });
      // The example lab is left out of the catalog (listed: false); this one is listed.
      const y = path.join(dir, 'uts-hostname', 'lab.yaml');
      fs.writeFileSync(y, fs.readFileSync(y, 'utf8').replace('listed: false', 'listed: true'));
      const port = 20000 + Math.floor(Math.random() * 20000);
      const server = spawn(
        process.execPath,
        [CLI, 'serve', '--dev', '--host', '127.0.0.1', '--port', String(port)],
        {
          env: testEnv({ UNDERLAY_LABS_DIR: dir }),
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let stderr = '';
      server.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
      const api = async () =>
        (
          await fetch(`http://127.0.0.1:${port}/api/labs`, { signal: AbortSignal.timeout(20_000) })
        ).json() as Promise<{
          labs: { id: string }[];
          problems: string[];
        }>;
      const until = async (
        what: string,
        pred: (r: { labs: { id: string }[]; problems: string[] }) => boolean,
        ms = 60_000,
      ) => {
        const end = Date.now() + ms;
        for (;;) {
          const r = await api().catch(() => undefined);
          if (r && pred(r)) return r;
          if (Date.now() > end || server.exitCode !== null || server.signalCode !== null)
            throw new Error(
              `${server.exitCode !== null || server.signalCode !== null ? `the server exited (${server.exitCode ?? server.signalCode})` : 'timed out'} ` +
                `waiting for ${what}; last: ${JSON.stringify(r)}; server stderr: ${stderr}`,
            );
          await sleep(100);
        }
      };
      try {
        // The start of `next dev` takes minutes under emulation (the VM tier).
        await until('the lab', (r) => r.labs.length === 1 && r.problems.length === 0, 300_000);
        // A lab this host cannot run is listed as unavailable, with the reason.
        const future = path.join(dir, 'future', 'lab.yaml');
        fs.mkdirSync(path.dirname(future));
        // Its own copy of the step texts: a lab may not reach into another's folder.
        fs.cpSync(path.join(dir, 'uts-hostname', 'steps'), path.join(dir, 'future', 'steps'), {
          recursive: true,
        });
        fs.writeFileSync(
          future,
          fs
            .readFileSync(path.join(dir, 'uts-hostname', 'lab.yaml'), 'utf8')
            .replace('id: uts-hostname', 'id: future')
            .replace('sandbox:', "requires:\n  kernel: '99.0'\nsandbox:"),
        );
        const listed = (await until('two labs', (r) => r.labs.length === 2)) as unknown as {
          labs: { id: string; available: boolean; reason?: string }[];
        };
        const f = listed.labs.find((l) => l.id === 'future');
        assert.equal(f?.available, false);
        assert.match(f?.reason ?? '', /needs Linux >= 99\.0/);
        const refused = await fetch(`http://127.0.0.1:${port}/api/labs/future/session`, {
          method: 'POST',
          headers: { 'x-underlay-client': 'labs.test' },
        });
        assert.equal(refused.status, 409);
        fs.rmSync(path.dirname(future), { recursive: true });
        await until('one lab again', (r) => r.labs.length === 1);
        const file = path.join(dir, 'uts-hostname', 'lab.yaml');
        const good = fs.readFileSync(file, 'utf8');
        fs.writeFileSync(file, good.replace('  duration: 10', '  duraton: 10'));
        const bad = await until('the problem', (r) => r.problems.length > 0);
        assert.equal(bad.labs.length, 0);
        assert.match(
          bad.problems.join('\n'),
          /lab\.yaml:\d+:\d+: metadata\.duraton: unknown field "duraton" - did you mean "duration"\?/,
        );
        fs.writeFileSync(file, good);
        await until('the fixed lab', (r) => r.labs.length === 1 && r.problems.length === 0);
      } finally {
        // (Waiting for an exit that already happened would hang the test.)
        if (server.exitCode === null && server.signalCode === null) {
          const exited = new Promise((r) => server.once('exit', r));
          server.kill('SIGTERM');
          await exited;
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    { timeout: 600_000 },
  );
});

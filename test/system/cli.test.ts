/**
 * The `underlay` command as a user meets it: clear errors for bad input,
 * exit codes, and `sandbox run` relaying through pipes.
 */
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { Classroom, memberKey } from '../../server/classroom/cohorts';
import { diagnose, measureMigration } from '../../server/cli/doctor';
import { loadConfig } from '../../server/config';
import { Store } from '../../server/store/store';
import { freePort } from '../helpers/browser';
import { CLI, REPO, TEST_UID_BASE, cli, sleep, tempDir, testConfig, testEnv } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

describe('underlay CLI', () => {
  test('--help works on every verb', async () => {
    for (const verb of [
      [],
      ['sandbox'],
      ['sandbox', 'run'],
      ['sandbox', 'ls'],
      ['sandbox', 'disks'],
      ['sandbox', 'rm'],
      ['sandbox', 'reap'],
      ['rootfs', 'build'],
      ['doctor'],
      ['serve'],
      ['cohort'],
      ['cohort', 'create'],
      ['cohort', 'list'],
      ['cohort', 'show'],
      ['cohort', 'close'],
      ['cohort', 'export'],
    ]) {
      const r = await cli([...verb, '--help']);
      assert.equal(r.code, 0, `${verb.join(' ')} --help: ${r.stderr}`);
      assert.match(r.stdout, /Usage: underlay/);
    }
  });

  test('cohorts declared in a file: problems with file:line:col and nothing applied; sync creates, updates, closes; the file wins', async () => {
    const dir = tempDir('underlay-cli-cohorts-file-');
    const env = { UNDERLAY_STATE_DIR: path.join(dir, 'state') };
    const tok = await cli(['cohort', 'token'], { env });
    assert.equal(tok.code, 0, tok.stderr);
    const token = /it is not stored anywhere\): (\S+)/.exec(tok.stdout)?.[1] as string;
    const hash = /instructorTokenSha256: '([0-9a-f]{64})'/.exec(tok.stdout)?.[1] as string;
    assert.equal(hash, crypto.createHash('sha256').update(token).digest('hex'));
    const file = path.join(dir, 'cohorts.yaml');

    // Problems: all of them, each placed; nothing applied.
    fs.writeFileSync(
      file,
      [
        'cohorts:',
        '  - name: mon-101',
        '    labs: [ns-pid, ns-pdi]',
        `    instructorTokenSha256: '${hash}'`,
        '    seat: 30',
        '    code: OOOO-1111',
        '    starts: next monday',
        '',
      ].join('\n'),
    );
    const bad = await cli(['cohort', 'sync', '--file', file], { env });
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /cohorts\.yaml:5:5: cohorts\[0\]\.seat: unknown field "seat" - did you mean "seats"\?/,
    );
    const again = await cli(['cohort', 'sync', '--file', file], { env });
    assert.equal(again.stderr, bad.stderr, 'the same problems each time');
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('seat:', 'seats:'));
    const bad2 = await cli(['cohort', 'sync', '--file', file], { env });
    assert.equal(bad2.code, 1);
    assert.match(bad2.stderr, /:3:20: cohorts\[0\]\.labs\[1\]: no lab "ns-pdi" in the labs folder/);
    assert.match(bad2.stderr, /:6:11: cohorts\[0\]\.code: "OOOO-1111" cannot be a join code/);
    assert.match(bad2.stderr, /:7:13: cohorts\[0\]\.starts: "next monday" is not a date/);
    assert.match(bad2.stderr, /3 problem\(s\): nothing applied/);
    assert.match((await cli(['cohort', 'list'], { env })).stdout, /^no cohorts/);

    // Valid: created with the declared code; the token is the instructor's.
    const good = (seats: number, more = '') =>
      fs.writeFileSync(
        file,
        [
          'cohorts:',
          '  - name: mon-101',
          '    labs: [ns-pid, uts-hostname]',
          `    instructorTokenSha256: '${hash}'`,
          `    seats: ${seats}`,
          '    code: acde-fg23',
          more,
        ].join('\n'),
      );
    good(30, `  - name: mon-102\n    labs: [ns-pid]\n    instructorTokenSha256: '${hash}'\n`);
    const made = await cli(['cohort', 'sync', '--file', file, '--url', 'http://lab.example'], {
      env,
    });
    assert.equal(made.code, 0, made.stderr);
    assert.match(
      made.stdout,
      /cohort mon-101 created \(open\): labs ns-pid, uts-hostname; 30 seats/,
    );
    assert.match(made.stdout, /students join at {2}http:\/\/lab\.example\/join\?code=ACDE-FG23/);
    assert.match(
      (await cli(['cohort', 'show', 'mon-101'], { env })).stdout,
      /declared in cohorts\.yaml/,
    );
    const store = new Store(env.UNDERLAY_STATE_DIR);
    try {
      assert.doesNotThrow(() => new Classroom(store).forInstructor('mon-101', token));
      assert.throws(
        () => new Classroom(store).forInstructor('mon-101', `${token}x`),
        /not the instructor link/,
      );
    } finally {
      store.close();
    }

    // Changed: updated; gone from the file: closed (kept); the CLI cannot close a file's cohort.
    good(10);
    const changed = await cli(['cohort', 'sync', '--file', file], { env });
    assert.equal(changed.code, 0, changed.stderr);
    assert.match(changed.stdout, /cohort mon-101 updated \(open\): .*10 seats/);
    assert.match(changed.stdout, /cohort mon-102 closed: it is no longer in the file/);
    assert.match(
      (await cli(['cohort', 'sync', '--file', file], { env })).stdout,
      /mon-101 unchanged/,
    );
    const close = await cli(['cohort', 'close', 'mon-101'], { env });
    assert.equal(close.code, 1);
    assert.match(close.stderr, /declared in the labs folder's cohorts\.yaml[\s\S]*closed: true/);
    const setFile = await cli(['cohort', 'set', 'mon-101', '--new-code'], { env });
    assert.equal(setFile.code, 1);
    assert.match(setFile.stderr, /declared in cohorts\.yaml[\s\S]*change it in the file/);

    // A name the CLI made is not the file's to take.
    assert.equal((await cli(['cohort', 'create', 'tue-1', '--labs', 'ns-pid'], { env })).code, 0);
    good(10, `  - name: tue-1\n    labs: [ns-pid]\n    instructorTokenSha256: '${hash}'\n`);
    const clash = await cli(['cohort', 'sync', '--file', file], { env });
    assert.equal(clash.code, 1);
    assert.match(clash.stderr, /cohort tue-1 was made with `underlay cohort create`/);
  });

  test('cohort create, list, show, close: the join link and code, the instructor link once, clear refusals', async () => {
    const env = {
      UNDERLAY_STATE_DIR: tempDir('underlay-cli-cohort-'),
    };
    const made = await cli(
      [
        'cohort',
        'create',
        'fri-101',
        '--labs',
        'ns-pid,ns-uts-ipc',
        '--seats',
        '30',
        '--ends',
        '2099-01-01',
        '--url',
        'http://lab.example:3000/',
      ],
      { env },
    );
    assert.equal(made.code, 0, made.stderr);
    const code = /join\?code=([A-Z2-9]{4}-[A-Z2-9]{4})/.exec(made.stdout)?.[1];
    assert.ok(code, made.stdout);
    assert.match(made.stdout, /labs ns-pid, ns-uts-ipc; 30 seats; open until 2099-01-01T00:00Z/);
    assert.match(
      made.stdout,
      /http:\/\/lab\.example:3000\/instructor\?cohort=fri-101#token=[\w-]{43}\n/,
    );
    const listed = await cli(['cohort', 'list'], { env });
    assert.match(
      listed.stdout,
      new RegExp(`^fri-101\\s+${code}\\s+open\\s+0/30\\s+ns-pid,ns-uts-ipc$`, 'm'),
    );
    const shown = await cli(['cohort', 'show', 'fri-101'], { env });
    assert.doesNotMatch(shown.stdout, /token/, 'the instructor link is not shown again');
    assert.match(shown.stdout, new RegExp(`code\\s+${code}`));

    const again = await cli(['cohort', 'create', 'fri-101', '--labs', 'ns-pid'], { env });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /a cohort named fri-101 exists already/);
    const badLab = await cli(['cohort', 'create', 'x', '--labs', 'ns-pdi'], { env });
    assert.equal(badLab.code, 1);
    assert.match(badLab.stderr, /no lab "ns-pdi"\n {2}hint: labs here: .*ns-pid/);
    const badDate = await cli(['cohort', 'create', 'y', '--labs', 'ns-pid', '--ends', 'friday'], {
      env,
    });
    assert.equal(badDate.code, 1);
    assert.match(badDate.stderr, /--ends "friday" is not a date/);
    // Changed after the fact: seats; nothing to change is a usage error.
    const more = await cli(['cohort', 'set', 'fri-101', '--seats', '40'], { env });
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /cohort fri-101 updated: labs ns-pid, ns-uts-ipc; 40 seats;/);
    const none = await cli(['cohort', 'set', 'fri-101'], { env });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /nothing to change/);
    // Warm seats for the class: a lab of the class, shown with it; a typo refused, nothing made.
    const badWarm = await cli(
      ['cohort', 'create', 'w-1', '--labs', 'ns-pid', '--warm', 'ns-pdi=3'],
      { env },
    );
    assert.equal(badWarm.code, 1);
    assert.match(
      badWarm.stderr,
      /warm seats of "ns-pdi": not one of the class's labs\n {2}hint: did you mean "ns-pid"\?/,
    );
    const warm = await cli(
      ['cohort', 'create', 'w-1', '--labs', 'ns-pid,ns-uts-ipc', '--warm', 'ns-pid=4'],
      { env },
    );
    assert.equal(warm.code, 0, warm.stderr);
    assert.match(
      (await cli(['cohort', 'show', 'w-1'], { env })).stdout,
      /labs ns-pid, ns-uts-ipc; no seat limit; no time limit; warm seats ns-pid=4/,
    );

    // Export: a student with progress on one step (written as the server would).
    const store = new Store(env.UNDERLAY_STATE_DIR);
    assert.equal(store.addMember('fri-101', 'st-1', 'Ann, "the" first'), 'joined');
    store.saveProgress('st-1', 'ns-pid', {
      lab: 'ns-pid',
      current: 1,
      steps: {
        'no-fork': {
          passed: true,
          skipped: false,
          message: 'm',
          attempts: 2,
          hintsShown: 1,
          passedAt: 0,
        },
      },
    });
    store.close();
    const csv = await cli(['cohort', 'export', 'fri-101'], { env });
    assert.equal(csv.code, 0, csv.stderr);
    const lines = csv.stdout.trimEnd().split('\r\n');
    assert.equal(
      lines[0],
      'cohort,student,joined,lab,step,passed,skipped,attempts,hints,passedAt,key',
    );
    // The key is the one the instructor's dashboard shows for her.
    assert.match(
      lines[1] as string,
      new RegExp(
        `^fri-101,"Ann, ""the"" first",[^,]+,ns-pid,no-fork,true,false,2,1,1970-01-01T00:00:00.000Z,${memberKey('fri-101', 'st-1')}$`,
      ),
    );
    assert.ok(lines.length > 5, 'a row for every step of both labs');
    const out = path.join(env.UNDERLAY_STATE_DIR, 'export.json');
    const json = await cli(['cohort', 'export', 'fri-101', '--format', 'json', '-o', out], { env });
    assert.equal(json.code, 0, json.stderr);
    assert.match(json.stderr, /rows \(1 students\) written to/);
    const rows = JSON.parse(fs.readFileSync(out, 'utf8')) as { step: string; attempts: number }[];
    assert.equal(rows.find((r) => r.step === 'no-fork')?.attempts, 2);
    const badFormat = await cli(['cohort', 'export', 'fri-101', '--format', 'xls'], { env });
    assert.equal(badFormat.code, 1);
    assert.match(badFormat.stderr, /--format must be csv or json/);

    const closed = await cli(['cohort', 'close', 'fri-101'], { env });
    assert.equal(closed.code, 0, closed.stderr);
    assert.match((await cli(['cohort', 'list'], { env })).stdout, /fri-101\s+\S+\s+closed/);
    const missing = await cli(['cohort', 'show', 'nope'], { env });
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /no cohort named "nope"\n {2}hint: list them with: underlay cohort list/,
    );
  });

  sysTest(
    'serve on a network address with no open class warns that anyone there is an anonymous student; with one, it does not',
    SYSTEM_NEEDS,
    async () => {
      const env = testEnv({
        UNDERLAY_STATE_DIR: tempDir('underlay-serve-warn-'),
      });
      /** Starts serve on 0.0.0.0, returns its log up to "listening", stops it. */
      const startLog = async (): Promise<string> => {
        const proc = spawn(
          process.execPath,
          [CLI, 'serve', '--host', '0.0.0.0', '--port', String(await freePort())],
          {
            env,
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let log = '';
        proc.stdout.on('data', (b: Buffer) => (log += b.toString()));
        proc.stderr.on('data', (b: Buffer) => (log += b.toString()));
        try {
          for (let i = 0; i < 1200 && !/"msg":"listening"/.test(log) && proc.exitCode === null; i++)
            await sleep(100);
          assert.match(log, /"msg":"listening"/, `serve did not start: ${log}`);
          return log;
        } finally {
          proc.kill('SIGTERM');
          await new Promise((r) => proc.once('exit', r));
        }
      };
      assert.match(
        await startLog(),
        /listening beyond this machine with no open class: anyone who reaches/,
      );
      const made = await cli(['cohort', 'create', 'warn-test', '--labs', 'ns-pid'], {
        env: { UNDERLAY_STATE_DIR: env.UNDERLAY_STATE_DIR as string },
      });
      assert.equal(made.code, 0, made.stderr);
      const withClass = await startLog();
      assert.doesNotMatch(withClass, /no open class/);
      assert.match(
        withClass,
        /open mode: a student who has not joined a class can still start any lab/,
      );

      // A labs folder with a cohorts.yaml: applied at start; a broken one is reported, not applied.
      const labsDir = tempDir('underlay-serve-labs-');
      for (const lab of ['ns-pid', 'uts-hostname'])
        fs.symlinkSync(path.join(REPO, 'labs', lab), path.join(labsDir, lab));
      const hash = 'a'.repeat(64);
      fs.writeFileSync(
        path.join(labsDir, 'cohorts.yaml'),
        `cohorts:\n  - name: from-file\n    labs: [uts-hostname]\n    instructorTokenSha256: '${hash}'\n`,
      );
      env.UNDERLAY_LABS_DIR = labsDir;
      env.UNDERLAY_CLASSES_ONLY = '1';
      const applied = await startLog();
      assert.match(applied, /"msg":"cohorts file applied".*"created":\["from-file"\]/);
      assert.doesNotMatch(applied, /open mode/, 'classes only: no open-mode notice');
      fs.writeFileSync(path.join(labsDir, 'cohorts.yaml'), 'cohorts:\n  - name: x\n    lab: []\n');
      const broken = await startLog();
      assert.match(
        broken,
        /"msg":"cohorts file problem".*cohorts\.yaml:3:5: cohorts\[0\]\.lab: unknown field \\"lab\\" - did you mean \\"labs\\"\?/,
      );
      assert.match(broken, /"msg":"cohorts file not applied"/);
    },
    { timeout: 180_000 },
  );

  test('an unknown flag is a clear error, exit 1', async () => {
    const r = await cli(['sandbox', 'run', '--memroy', '1G', '--', 'true']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown option '--memroy'/);
  });

  test('an unknown command is a clear error', async () => {
    const r = await cli(['sandbx']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown command 'sandbx'/);
  });

  sysTest(
    'sandbox run returns when the command exits, even if a background job still holds its stdout',
    SYSTEM_NEEDS,
    async () => {
      // Before: the CLI waited for the sleep (300 s) and this hit the 60 s timeout.
      const r = await cli(['sandbox', 'run', '--', 'sh', '-c', 'sleep 300 & echo started; exit 3']);
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout, 'started\n');
    },
  );

  sysTest(
    'malformed and impossible limits are refused before anything is created',
    SYSTEM_NEEDS,
    async () => {
      const bad = await cli(['sandbox', 'run', '--memory', 'lots', '--', 'true']);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /--memory must be a size like 256M or 1G, got 'lots'/);
      const tiny = await cli(['sandbox', 'run', '--memory', '1k', '--', 'true']);
      assert.notEqual(tiny.code, 0);
      assert.match(tiny.stderr, /impossible limit memory: at least 16M/);
      const pids = await cli(['sandbox', 'run', '--pids', '2', '--', 'true']);
      assert.match(pids.stderr, /impossible limit pids/);
      const host = await cli(['sandbox', 'run', '--hostname', 'not_valid!', '--', 'true']);
      assert.match(host.stderr, /invalid hostname/);
      const none = await cli(['sandbox', 'run']);
      assert.match(none.stderr, /no command given/);
    },
  );

  sysTest(
    'no base image yet: the error says to run `underlay rootfs build`',
    ['root'],
    async () => {
      const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-noimg-'));
      try {
        const r = await cli(['sandbox', 'run', '--', 'true'], {
          env: { UNDERLAY_IMAGES_DIR: empty },
        });
        assert.equal(r.code, 1);
        assert.match(r.stderr, /no base image yet/);
        assert.match(r.stderr, /hint: run `underlay rootfs build`/);
        const d = await cli(['doctor'], { env: { UNDERLAY_IMAGES_DIR: empty } });
        assert.equal(d.code, 1);
        assert.match(d.stdout, /\[FAIL\] base image\s+not built\n\s+fix: underlay rootfs build/);
      } finally {
        fs.rmSync(empty, { recursive: true, force: true });
      }
    },
  );

  test('doctor names missing kernel features with the fix (a 5.4 kernel)', () => {
    const f = diagnose({ release: '5.4.0-150-generic' });
    const idmap = f.find((x) => x.check === 'idmapped mounts');
    assert.equal(idmap?.status, 'warn', 'a fallback exists: a warning, not a failure');
    assert.match(idmap?.detail ?? '', /5\.4\.0-150-generic < 5\.19/);
    assert.match(idmap?.fix ?? '', /5\.19/);
    assert.equal(f.find((x) => x.check === 'kernel')?.status, 'fail');
    assert.equal(f.find((x) => x.check === 'setns with pidfd')?.status, 'fail');
  });

  test('doctor fails when Yama would refuse every terminal its console socket (pidfd_getfd)', () => {
    const at = (ptraceScope: number | undefined, capSysPtrace = true) =>
      diagnose({ release: os.release(), ptraceScope, capSysPtrace }).find(
        (x) => x.check === 'terminal console socket',
      );
    assert.equal(at(3)?.status, 'fail');
    assert.match(at(3)?.detail ?? '', /ptrace_scope=3/);
    assert.match(at(3)?.fix ?? '', /ptrace_scope to 2 or lower/);
    for (const scope of [0, 1, 2, undefined]) assert.equal(at(scope)?.status, 'ok', `${scope}`);
    for (const scope of [1, 2]) {
      assert.equal(at(scope, false)?.status, 'fail', `${scope} without CAP_SYS_PTRACE`);
      assert.match(at(scope, false)?.fix ?? '', /CAP_SYS_PTRACE/);
    }
    assert.equal(at(0, false)?.status, 'ok', 'scope 0: same uid is enough');
  });

  test('doctor times a cgroup migration and says how to make it fast when it is slow', async () => {
    const ms = await measureMigration();
    assert.equal(typeof ms, 'number', 'the probe migration could not be made');
    assert.ok(ms! > 0);
    // Its probe cgroup and its `sleep` are gone.
    assert.deepEqual(
      execFileSync('find', [
        '/sys/fs/cgroup',
        '-maxdepth',
        '4',
        '-name',
        `underlay-doctor-${process.pid}`,
      ])
        .toString()
        .trim(),
      '',
    );
    const slow = diagnose({ release: os.release(), migrationMs: 7.6 }).find(
      (x) => x.check === 'cgroup migration',
    );
    assert.equal(slow?.status, 'warn');
    assert.match(slow?.detail ?? '', /^7\.60 ms after a quiet spell: favordynmods is off/);
    assert.match(slow?.fix ?? '', /cgroup_favordynmods=true/);
    const fast = diagnose({ release: os.release(), migrationMs: 0.04 }).find(
      (x) => x.check === 'cgroup migration',
    );
    assert.equal(fast?.status, 'ok');
    assert.equal(fast?.fix, undefined);
    const none = diagnose({ release: os.release() }).find((x) => x.check === 'cgroup migration');
    assert.equal(none, undefined, 'no figure, no finding');
  });

  test('doctor fails when host users own subordinate ids inside the session ranges', () => {
    // A range inside the session ranges of whatever base this run uses, and one far outside.
    const inside = loadConfig().uidBase + 65536 * 3;
    const f = diagnose({
      release: os.release(),
      subuid: `alice:${inside}:65536\n`,
      subgid: 'bob:10000000000:65536\n',
    });
    const ids = f.find((x) => x.check === 'session id ranges');
    assert.equal(ids?.status, 'fail');
    assert.match(ids?.detail ?? '', new RegExp(`alice:${inside}:65536`));
    assert.doesNotMatch(ids?.detail ?? '', /bob/);
    assert.match(ids?.fix ?? '', /UNDERLAY_UID_BASE/);
    const clean = diagnose({ release: os.release(), subuid: '', subgid: '' });
    assert.equal(clean.find((x) => x.check === 'session id ranges')?.status, 'ok');
  });

  sysTest('doctor passes on this host, and --json is machine-readable', SYSTEM_NEEDS, async () => {
    const r = await cli(['doctor', '--json']);
    assert.equal(r.code, 0, r.stdout);
    const j = JSON.parse(r.stdout) as {
      ok: boolean;
      findings: { check: string; status: string }[];
    };
    assert.equal(j.ok, true);
    assert.ok(j.findings.some((f) => f.check === 'cgroups' && f.status !== 'fail'));
  });

  sysTest(
    'sandbox run relays stdin/stdout/stderr through pipes and exits with the command status',
    SYSTEM_NEEDS,
    async () => {
      const r = await cli(
        [
          'sandbox',
          'run',
          '--hostname',
          'relay',
          '--',
          'sh',
          '-c',
          'read x; echo "got $x on $(hostname)"; echo oops >&2; exit 7',
        ],
        {
          input: 'hello\n',
        },
      );
      assert.equal(r.code, 7);
      assert.equal(r.stdout, 'got hello on relay\n');
      assert.equal(r.stderr, 'oops\n');
    },
  );

  sysTest('sandbox run as learner runs as uid 1000', SYSTEM_NEEDS, async () => {
    const r = await cli([
      'sandbox',
      'run',
      '--user',
      'learner',
      '--',
      'sh',
      '-c',
      'id -u; echo $HOME',
    ]);
    assert.equal(r.stdout, '1000\n/home/learner\n');
  });

  sysTest('a missing command inside reports exit 127 with a message', SYSTEM_NEEDS, async () => {
    const r = await cli(['sandbox', 'run', '--', 'no-such-command']);
    assert.equal(r.code, 127);
    assert.match(r.stderr, /cannot run no-such-command/);
  });

  sysTest(
    'without idmapped mounts (UNDERLAY_IDMAP=0) a shifted copy of the image serves the same sandbox',
    SYSTEM_NEEDS,
    async () => {
      const images = testConfig().imagesDir;
      try {
        const r = await cli(
          [
            'sandbox',
            'run',
            '--',
            'sh',
            '-c',
            'stat -c "%u %a" /usr/bin/passwd; getcap /usr/bin/ping; setpriv --reuid=1000 --regid=1000 --clear-groups ping -c1 -W2 127.0.0.1 >/dev/null && echo pinged',
          ],
          { env: { UNDERLAY_IDMAP: '0' }, timeoutMs: 120_000 },
        );
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.stdout.trim().split('\n'), [
          '0 4755',
          '/usr/bin/ping cap_net_raw=ep',
          'pinged',
        ]);
      } finally {
        for (const id of fs.readdirSync(images)) {
          const d = path.join(images, id);
          if (!fs.statSync(d).isDirectory()) continue;
          for (const e of fs.readdirSync(d)) {
            if (e.startsWith('shifted-') && Number(e.slice(8)) >= TEST_UID_BASE)
              fs.rmSync(path.join(d, e), { recursive: true, force: true });
          }
        }
      }
    },
  );

  sysTest('sandbox rm of an unknown id is a clear error', ['root'], async () => {
    const r = await cli(['sandbox', 'rm', 'nope']);
    assert.equal(r.code, 1, 'an unknown id is a bad request (1), not a sandbox failure (125)');
    assert.match(r.stderr, /no sandbox with id "nope"/);
  });
});

/**
 * Attacks a curious student made from inside a default sandbox, each fixed
 * in the sandbox core; each test here failed on the code before its fix.
 * Every attack is followed by a check that the host and the next sandbox are
 * unharmed.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import type { Sandbox, SandboxManager } from '../../server/sandbox/index';
import { REPO, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

/** Copies a host file into the sandbox (over the exec's stdin) and makes it executable. */
async function install(sb: Sandbox, from: string, to: string): Promise<void> {
  const r = await sb.exec(['sh', '-c', 'cat > "$1" && chmod 755 "$1"', 'sh', to], {
    input: fs.readFileSync(from),
  });
  assert.equal(r.code, 0, r.stderr);
}

/** The host and the next sandbox still work: what every attack must leave true. */
async function hostUnharmed(m: SandboxManager): Promise<void> {
  execFileSync('unshare', ['-u', 'true']); // host root can still make a namespace (test side only)
  const sb = await m.create({ hostname: 'after' });
  try {
    const r = await sb.exec(['hostname']);
    assert.equal(r.stdout.trim(), 'after');
  } finally {
    await m.teardown(sb);
  }
}

describe('sandbox hardening', { concurrency: false }, () => {
  let m: SandboxManager;
  let sb: Sandbox;
  let injector = '';
  let setupError: unknown;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      m = testManager();
      sb = await m.create({ hostname: 'attacker' });
      if (os.arch() === 'x64') {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'underlay-inject-'));
        injector = path.join(dir, 'inject');
        execFileSync('gcc', [
          '-static',
          '-O2',
          '-o',
          injector,
          path.join(REPO, 'test', 'fixtures', 'inject-syscall.c'),
        ]);
      }
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (sb) await m.teardown(sb).catch(() => {});
    if (injector) fs.rmSync(path.dirname(injector), { recursive: true, force: true });
  });

  sysTest(
    'every process in the sandbox is under the seccomp filter, PID 1 included',
    SYSTEM_NEEDS,
    async () => {
      if (setupError) throw setupError;
      const r = await sb.exec([
        'sh',
        '-c',
        'for s in /proc/[0-9]*/status; do printf "%s %s\\n" "$s" "$(grep ^Seccomp: "$s" | tr -d "\\t")"; done',
      ]);
      const lines = r.stdout.trim().split('\n');
      assert.ok(
        lines.some((l) => l.startsWith('/proc/1/status')),
        r.stdout,
      );
      for (const l of lines) assert.match(l, /Seccomp:2$/, `not filtered: ${l}`);
    },
  );

  sysTest(
    'ptrace cannot make PID 1 run a denied syscall; the same injection into an unfiltered process works',
    [...SYSTEM_NEEDS, 'x86_64'],
    async () => {
      if (setupError) throw setupError;
      assert.ok(injector, 'the injector is built on x86_64');
      await install(sb, injector, '/tmp/inject');
      // The control: a process joined without the filter really can be made to run keyctl,
      // so a refusal below is the filter's doing, not a broken injector.
      const control = await sb.exec(
        ['sh', '-c', 'setsid sleep 60 >/dev/null 2>&1 </dev/null & echo $!'],
        { seccomp: false },
      );
      const victim = control.stdout.trim().split('\n')[0];
      assert.match(victim ?? '', /^\d+$/, control.stdout + control.stderr);
      const c = await sb.exec(['/tmp/inject', victim as string]);
      assert.match(c.stdout, /^keyctl=[1-9]\d*$/m, `control injection: ${c.stdout}${c.stderr}`);
      // The attack: PID 1.
      const r = await sb.exec(['/tmp/inject', '1']);
      assert.match(
        r.stdout,
        /^(keyctl=-1|attach=-\d+)$/m,
        `PID 1 ran keyctl: ${r.stdout}${r.stderr}`,
      );
      assert.doesNotMatch(r.stdout, /^keyctl=[1-9]/m);
      await hostUnharmed(m);
    },
  );
});

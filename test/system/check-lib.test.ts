/**
 * The check library's process helpers (server/labs/check-lib.sh,
 * labs/README.md#the-check-library) against what the kernel says, run as
 * checks run: trusted, in the check view, as root in the sandbox's initial
 * namespaces. They are written with bash builtins only (a fork per process
 * in /proc cost seconds per check in the emulated VM), so each one's answer
 * is compared here with the slow, obvious way of getting it.
 */
import * as assert from 'node:assert/strict';
import { after, before, describe } from 'node:test';
import { runScript } from '../../server/labs/runtime';
import type { Sandbox } from '../../server/sandbox/index';
import { testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

describe('the check library, in the check view', () => {
  let sb: Sandbox | undefined;
  /** PIDs (in the sandbox) of: a sleep in its own UTS namespace, the init of a new pid namespace, a busy loop. */
  let uts = '';
  let pidInit = '';
  let loop = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    sb = await testManager().create({ hostname: 'checklib' });
    const r = await sb.exec([
      'bash',
      '-c',
      // Started detached; their PIDs are read back from files once they exist.
      'setsid unshare -u sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/uts; ' +
        'setsid unshare -p --fork --mount-proc sleep 600 </dev/null >/dev/null 2>&1 & ' +
        'setsid bash -c "while :; do :; done" </dev/null >/dev/null 2>&1 & echo $! > /tmp/loop; ' +
        // The pid namespace's init is the sleep whose last NSpid is 1.
        'for i in $(seq 100); do for p in $(pgrep -x sleep); do ' +
        '[ "$(awk \'/^NSpid:/ { print $NF }\' /proc/$p/status)" = 1 ] && { echo $p > /tmp/pidinit; break 2; }; done; sleep 0.1; done; ' +
        'cat /tmp/uts /tmp/pidinit /tmp/loop',
    ]);
    [uts = '', pidInit = '', loop = ''] = r.stdout.trim().split('\n');
  });

  after(async () => {
    if (sb) await testManager().teardown(sb);
  });

  async function check(script: string): Promise<string> {
    const r = await runScript(sb!, script, { timeoutS: 30, env: {}, trusted: true });
    assert.equal(r.code, 0, `${script}: ${r.output}`);
    return r.output.trim();
  }

  sysTest(
    'other_ns_pids lists exactly the processes outside the sandbox UTS namespace',
    SYSTEM_NEEDS,
    async () => {
      assert.match(uts ?? '', /^\d+$/, 'the sleep in its own UTS namespace started');
      const fast = await check('other_ns_pids uts | sort -n | tr "\\n" " "');
      const slow = await check(
        'b=$(readlink /proc/1/ns/uts); for p in /proc/[0-9]*; do l=$(readlink $p/ns/uts 2>/dev/null) || continue; ' +
          '[ "$l" != "$b" ] && echo ${p#/proc/}; done | sort -n | tr "\\n" " "',
      );
      assert.equal(fast, slow);
      // The unshare'd sleep (the exec'd `unshare` became it) and nothing of the sandbox's own.
      assert.deepEqual(fast.split(' ').filter(Boolean), [uts]);
      assert.equal(await check('other_ns_pids ipc | wc -l'), '0');
    },
  );

  sysTest(
    'term_of and pdesc name the terminal a process came from, through its ancestors',
    SYSTEM_NEEDS,
    async () => {
      // A shell of terminal T2 (as the session manager starts them), whose child
      // dropped the variable, and a process no terminal started.
      const r = await sb!.exec([
        'bash',
        '-c',
        'UNDERLAY_TERMINAL=T2 setsid bash -c "env -u UNDERLAY_TERMINAL sleep 602; :" </dev/null >/dev/null 2>&1 & ' +
          'setsid sleep 603 </dev/null >/dev/null 2>&1 & ' +
          'for i in $(seq 100); do pgrep -xf "sleep 602" >/dev/null && pgrep -xf "sleep 603" >/dev/null && break; sleep 0.1; done; ' +
          'pgrep -xf "sleep 602"; pgrep -xf "sleep 603"',
      ]);
      const [child = '', alone = ''] = r.stdout.trim().split('\n');
      assert.equal(await check(`term_of ${child}`), 'T2', 'found in the parent shell');
      assert.equal(await check(`pdesc ${child}`), `${child} (sleep, from T2)`);
      assert.equal(
        await check(`term_of ${alone}; echo "[$(pdesc ${alone})]"`),
        `[${alone} (sleep)]`,
      );
      assert.equal(await check('pdesc 999999'), '999999', 'a process gone is just its number');
    },
  );

  sysTest('nspid, is_ns_init and procs_in_pidns agree with /proc', SYSTEM_NEEDS, async () => {
    assert.match(pidInit ?? '', /^\d+$/, 'the pid namespace init was found');
    const fields = await check(`nspid ${pidInit}`);
    assert.match(fields, new RegExp(`^${pidInit} 1$`));
    assert.equal(await check(`is_ns_init ${pidInit} && echo yes`), 'yes');
    assert.equal(await check(`is_ns_init 1 && echo yes`), 'yes', 'the sandbox init is an init too');
    assert.equal(await check(`is_ns_init ${loop} || echo no`), 'no');
    assert.equal(await check(`nspid 999999 || echo gone`), 'gone');
    // Members of the new pid namespace: its init (and nothing else lives there).
    assert.equal(await check(`procs_in_pidns "$(ns_inode ${pidInit} pid)"`), pidInit);
    const all = Number(await check('procs_in_pidns "$(ns_inode 1 pid)" | wc -l'));
    const slow = Number(await check('ls -d /proc/[0-9]* | wc -l'));
    assert.ok(
      all >= slow - 5 && all <= slow + 5,
      `${all} processes in the sandbox's pid namespace, /proc lists ${slow}`,
    );
  });

  sysTest(
    'cpu_ticks, cpu_pct and busy_pids see the busy loop and nothing idle',
    SYSTEM_NEEDS,
    async () => {
      assert.match(loop ?? '', /^\d+$/);
      const slowTicks = `awk '{ sub(/.*\\) /, ""); print $12 + $13 }' /proc/${loop}/stat`;
      const [a = -1, b = -1] = (await check(`cpu_ticks ${loop}; ${slowTicks}`))
        .split('\n')
        .map(Number);
      assert.ok(a > 0 && b >= a && b - a < 100, `cpu_ticks ${a}, awk says ${b}`);
      // A loop on a host or guest under load gets less than a whole CPU; an idle
      // sleep gets none. Nothing here depends on how much exactly.
      assert.ok(Number(await check(`cpu_pct ${loop} 1`)) >= 10);
      assert.equal(await check(`cpu_pct ${uts} 1`), '0');
      const busy = (await check('busy_pids 1 10')).split('\n');
      assert.ok(busy.includes(loop), `busy: ${busy.join(',')}`);
      assert.ok(!busy.includes(uts) && !busy.includes('1'), `busy: ${busy.join(',')}`);
      const [u1 = 0, u2 = -1e9] = (
        await check('uptime_cs; awk \'{ printf "%d\\n", $1 * 100 }\' /proc/uptime')
      )
        .split('\n')
        .map(Number);
      assert.ok(Math.abs(u1 - u2) < 500, `uptime_cs ${u1}, awk ${u2}`);
    },
  );

  sysTest('cg_mode, cg_dir and cg_root name the cgroup the host uses', SYSTEM_NEEDS, async () => {
    const mode = await check('cg_mode');
    const v2 = mode === 'v2';
    assert.equal(await check('stat -fc %T /sys/fs/cgroup'), v2 ? 'cgroup2fs' : 'tmpfs');
    const slow = v2
      ? `sed -n 's/^0:://p' /proc/${loop}/cgroup`
      : `awk -F: '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == "cpu") print $3 }' /proc/${loop}/cgroup`;
    const dir = await check(`cg_dir ${loop} cpu`);
    assert.equal(dir, await check(slow));
    assert.ok(dir.startsWith('/'), dir);
    assert.equal(await check('cg_root'), v2 ? '/sys/fs/cgroup' : '/sys/fs/cgroup/cpu');
  });
});

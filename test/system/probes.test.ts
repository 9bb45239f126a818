/**
 * docs/sandbox.md#probes: every escape/abuse probe this kernel supports, run as root
 * inside a real sandbox, with a host process, a host TCP listener, a host
 * abstract socket and another session as targets. A probe that SUCCEEDS
 * fails the test; so does a probe that never reported.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import type { Sandbox } from '../../server/sandbox/index';
import { REPO, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, setupGuard, sysTest } from '../helpers/requires';

const EXPECTED = [
  '1',
  '2',
  '3',
  '4a',
  '4b',
  '4c',
  '5',
  '6',
  '7a',
  '7b',
  '11',
  '12',
  '13',
  '15',
  '16a',
  '16b',
  '17',
  '18',
  '19a',
  '19b',
  '19c',
  '19d',
  '21',
  '22',
  '25-bpf',
  '25-io_uring_setup',
  '25-io_setup',
  '25-perf_event_open',
  '25-userfaultfd',
  '26',
  '30',
  '31a',
  '32a',
  '32b',
  '33',
  '35',
  '36',
  '37',
  '40',
  '41',
  '42',
];

const { fail: setupFailed, ready } = setupGuard();

describe('escape probes', () => {
  let probed: Sandbox;
  let other: Sandbox;
  let tcp: net.Server;
  let abstract: net.Server;
  let tcpConnections = 0;
  let abstractConnections = 0;
  const abstractName = `underlay-probe-${process.pid}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    tcp = net.createServer((s) => {
      tcpConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    abstract = net.createServer((s) => {
      abstractConnections++;
      s.destroy();
    });
    await new Promise<void>((r) => abstract.listen(`\0${abstractName}`, r));
    try {
      other = await testManager().create({ hostname: 'other' });
      probed = await testManager().create({ hostname: 'probed' });
    } catch (err) {
      setupFailed(err);
    }
  });
  after(async () => {
    tcp?.close();
    abstract?.close();
    for (const sb of [probed, other])
      if (sb)
        await testManager()
          .teardown(sb.record)
          .catch(() => {});
  });

  sysTest('no probe succeeds, and every probe reported', SYSTEM_NEEDS, async () => {
    ready();
    const hostName = os.hostname();
    const otherUpper = path.join(other.record.resources.sessionDir, 'scratch', 'upper');
    const script = fs.readFileSync(path.join(REPO, 'test', 'fixtures', 'probes.sh'), 'utf8');
    const port = (tcp.address() as net.AddressInfo).port;
    const r = await probed.exec(
      ['bash', '-s', '--', String(process.pid), String(port), abstractName, otherUpper],
      {
        input: script,
        timeoutMs: 60_000,
      },
    );
    const lines = r.stdout.trim().split('\n');
    assert.equal(
      lines.at(-1),
      'DONE',
      `the probe script did not finish:\n${r.stdout}\n${r.stderr}`,
    );
    const failed = lines.filter((l) => l.startsWith('FAIL'));
    assert.deepEqual(failed, [], `probes succeeded:\n${failed.join('\n')}`);
    const reported = new Set(
      lines.filter((l) => /^(SAFE|NA) /.test(l)).map((l) => l.split(' ')[1]),
    );
    const silent = EXPECTED.filter((id) => !reported.has(id));
    assert.deepEqual(silent, [], `probes that never reported: ${silent.join(' ')}`);
    // Host side of the probes.
    assert.equal(os.hostname(), hostName, 'probe 3: the host hostname changed');
    assert.equal(tcpConnections, 0, 'probe 19c: the host listener was reached');
    assert.equal(abstractConnections, 0, 'probe 19d: the host abstract socket was reached');
    assert.ok(fs.existsSync(otherUpper), 'probe 7: the other session was damaged');
  });

  sysTest(
    'the probes can fail: without the seccomp filter, io_uring, io_setup and TIOCSTI are reachable',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const script = fs.readFileSync(path.join(REPO, 'test', 'fixtures', 'probes.sh'), 'utf8');
      const port = (tcp.address() as net.AddressInfo).port;
      const r = await probed.exec(
        ['bash', '-s', '--', String(process.pid), String(port), abstractName, '/nonexistent'],
        {
          input: script,
          timeoutMs: 60_000,
          seccomp: false,
        },
      );
      const failed = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('FAIL'))
        .map((l) => l.split(' ')[1]);
      assert.ok(
        failed.includes('25-io_uring_setup'),
        `expected io_uring to be reachable without seccomp: ${failed}`,
      );
      assert.ok(failed.includes('37'), `expected TIOCSTI to work without seccomp: ${failed}`);
      assert.ok(
        failed.includes('25-io_setup'),
        `expected io_setup to work without seccomp: ${failed}`,
      );
    },
  );

  sysTest('probe 29: a namespaced sysctl changes only the sandbox', SYSTEM_NEEDS, async () => {
    ready();
    const hostValue = fs.readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8');
    const r = await probed.exec([
      'sh',
      '-c',
      'sysctl -qw net.ipv4.ping_group_range="0 65535" && cat /proc/sys/net/ipv4/ping_group_range; sysctl -qw net.ipv4.ping_group_range="1 0"',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^0\s+65535/);
    assert.equal(fs.readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8'), hostValue);
  });

  sysTest('probe 34: setuid files in the base elevate only to sandbox root', SYSTEM_NEEDS, () => {
    ready();
    const root = `/proc/${probed.initPid}/root`;
    const suid = ['/usr/bin/su', '/usr/bin/mount', '/usr/bin/passwd', '/usr/bin/newgrp'].filter(
      (f) => fs.existsSync(root + f),
    );
    assert.ok(suid.length > 0, 'expected setuid binaries in the base image');
    for (const f of suid) {
      const st = fs.statSync(root + f);
      assert.ok(st.mode & 0o4000, `${f} is not setuid`);
      assert.equal(
        st.uid,
        probed.record.uidBase,
        `${f} is owned by host uid ${st.uid}, not the session's root`,
      );
    }
  });

  sysTest('probe 39: kill -9 -1 inside kills only sandbox processes', SYSTEM_NEEDS, async () => {
    ready();
    await probed.exec(['sh', '-c', 'sleep 100 & kill -9 -1; true']).catch(() => undefined);
    assert.ok(fs.existsSync(`/proc/${probed.initPid}`), 'the sandbox init died');
    assert.ok(fs.existsSync(`/proc/${other.initPid}`), 'another session died');
    const r = await probed.exec(['echo', 'still-usable']);
    assert.equal(r.stdout, 'still-usable\n');
  });
});

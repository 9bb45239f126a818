/**
 * Browser terminals end to end minus the browser: a real server (HTTP +
 * socket.io), real sandboxes, shells joined into them on their own ptys, and a real
 * socket.io client that decodes and acks like xterm.js does.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import { after, before, describe } from 'node:test';
import { spawnSync } from 'node:child_process';
import { loadNative } from '../../native/index';
import { timeScale } from '../../server/config';
import { LIMITS, type SessionCreated } from '../../server/protocol/index';
import { ConsolePty } from '../../server/sandbox/console-pty';
import { SessionManager } from '../../server/sessions/session-manager';
import { createApp, type App } from '../../server/transport/http';
import { createLogger } from '../../server/util/logger';
import { pidsOwnedByRange, sleep, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, setupGuard, sysTest, type Need } from '../helpers/requires';
import { TermClient } from '../helpers/term-client';

const { fail: setupFailed, ready } = setupGuard();

async function waitUntil(
  cond: () => boolean,
  what: string,
  ms = 20_000 * timeScale(),
): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await sleep(10);
  }
}

/** Server logic only (replay, flow control, auth, validation): the VM tier leaves these to the host. */
const KERNEL_FREE: Need[] = [...SYSTEM_NEEDS, 'any-kernel'];

describe('terminals over socket.io', () => {
  let app: App;
  let url = '';
  let a: SessionCreated;
  let b: SessionCreated;
  const clients: TermClient[] = [];
  const connect = async (s: SessionCreated, opts: { origin?: string } = {}) => {
    const c = await TermClient.connect(url, { session: s.session, token: s.token }, opts);
    clients.push(c);
    return c;
  };
  /** A connected client with one shell at its prompt. */
  const shell = async (s: SessionCreated, size: { cols?: number; rows?: number } = {}) => {
    const c = await connect(s);
    const t = await c.open(size);
    assert.ok(t.ok, JSON.stringify(t));
    await c.waitFor(t.term, /# $/);
    return { c, term: t.term };
  };
  /** `bytes` of output in one go, then END: returns when `c` has seen END. */
  const flood = async (c: TermClient, term: string, bytes: number) => {
    const from = c.terms.get(term)?.next ?? 0;
    await c.input(term, `head -c ${bytes} /dev/zero | tr '\\0' x; echo; echo E''ND\r`);
    // The byte count first (cheap), then the marker in what is left.
    await waitUntil(
      () => (c.terms.get(term)?.next ?? 0) - from >= bytes,
      `${bytes} bytes of output`,
      20_000 * timeScale(),
    );
    await c.waitFor(term, /^END\r?$/m, 20_000 * timeScale());
  };
  const post = async (): Promise<SessionCreated> => {
    const send = () =>
      fetch(`${url}/api/sessions`, {
        method: 'POST',
        headers: { 'x-underlay-client': 'terminals.test' },
      });
    // Once more on a network error only: the server closes idle keep-alive
    // connections (its slow-client rule), and fetch does not retry a POST on
    // a pooled one that was just closed (seen in the slow VM guest).
    const r = await send().catch(send);
    if (r.status !== 201) throw new Error(`POST /api/sessions: ${r.status} ${await r.text()}`);
    return (await r.json()) as SessionCreated;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      const log = createLogger('error');
      const sessions = new SessionManager(testManager(), log, { graceMs: 2000 });
      app = createApp({ sessions, log, bareSessions: true });
      await new Promise<void>((r) => app.server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      a = await post();
      b = await post();
    } catch (err) {
      setupFailed(err);
    }
  });
  after(async () => {
    for (const c of clients) c.close();
    await app?.close();
  });

  sysTest(
    'typing reaches the shell and echoes; the shell runs in the session sandbox',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const { c, term } = await shell(a);
      const t = { term };
      assert.equal((await c.run(t.term, 'hostname; id -u')).trim(), 'lab\n0');
    },
  );

  sysTest(
    "the shell's terminal is the sandbox's own pty: `tty` names it, ^Z stops a job, `fg` resumes it",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const { c, term } = await shell(s);
      const out = await c.run(term, 'tty; [ -t 0 ] && echo stdin-is-a-tty; ps -o tty= -p $$');
      assert.match(out, /^\/dev\/pts\/\d+\r?$/m, `tty says: ${out}`);
      assert.match(out, /^stdin-is-a-tty\r?$/m);
      assert.match(out, /^pts\/\d+\r?$/m, 'ps sees the shell on a sandbox pty');
      // cat in the foreground, typed to only once it runs: keys typed ahead
      // while bash still has the terminal in readline's raw mode keep their
      // bare \r (no ICRNL then), and cat would never see a line end.
      await c.input(term, "sh -c 'echo cat-ready; exec cat'\r");
      await c.waitFor(term, /^cat-ready\r?$/m);
      // A typed line comes back twice: the echo, then cat.
      await c.input(term, 'first-line\r');
      await c.waitFor(term, /first-line\r\n[^\n]*first-line/);
      await c.input(term, '\x1a'); // ^Z
      await c.waitFor(term, /Stopped\s+sh -c[^\n]*\n[\s\S]*# $/);
      // fg prints the command (readline has left raw mode by then) and
      // hands the terminal back to cat: wait for that before typing.
      await c.input(term, 'fg\r');
      await c.waitFor(term, /fg\r\n[^\n]*sh -c 'echo cat-ready; exec cat'\r\n$/);
      await c.input(term, 'second-line\r');
      await c.waitFor(term, /second-line\r\n[^\n]*second-line/);
      await c.input(term, '\x04'); // EOF ends cat; the prompt returns
      assert.equal((await c.run(term, 'jobs | wc -l')).trim(), '0');
      c.close();
    },
  );

  sysTest(
    "no process relays a shell's bytes: the server holds the sandbox pty's master, the join helper none",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const { c, term } = await shell(s);
      const helper = app.sessions.get(s.session)!.terminals.get(term)!.terminal.pid;
      assert.ok(helper > 0);
      /** fds of `pid` open on a pty multiplexer (5:2): pty masters. */
      const masters = (pid: number) =>
        fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
          try {
            return fs.statSync(`/proc/${pid}/fd/${fd}`).rdev === 0x502;
          } catch {
            return false; // closed meanwhile
          }
        });
      assert.deepEqual(masters(helper), [], 'the helper holds a pty master (a relay)');
      // Started by posix_spawn, as a check's helper is, not by a fork of the
      // server onto a host pty of its own (node-pty's forkpty): its stdio are
      // pipes, and it leads a session of its own.
      for (const fd of [0, 1, 2])
        assert.match(
          fs.readlinkSync(`/proc/${helper}/fd/${fd}`),
          /^pipe:/,
          `the helper's fd ${fd}`,
        );
      const stat = fs.readFileSync(`/proc/${helper}/stat`, 'utf8');
      const sid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]);
      assert.equal(sid, helper, 'the helper leads a session of its own');
      // The shell's pty is the sandbox's: its number is the one `tty` names there.
      const n = (await c.run(term, 'tty')).trim().replace('/dev/pts/', '');
      assert.match(n, /^\d+$/);
      assert.ok(masters(process.pid).length >= 1, 'the server holds no pty master');
      c.close();
      await app.sessions.end(s.session);
    },
  );

  sysTest(
    'a shell that closes every fd of its pty ends its terminal (and its input goes nowhere else)',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const { c, term } = await shell(s);
      // No process holds the pty's other end now, but the shell runs on: the
      // server's master reads EIO and is closed. Before, the terminal stayed
      // "alive" for as long as the shell did, and input went to the closed
      // fd's number, which the server may already have reused.
      await c.input(term, "trap '' HUP; exec 0<&- 1>&- 2>&- 255<&-; sleep 600\r");
      await waitUntil(() => c.terms.get(term)?.exited !== undefined, 'the terminal ends');
      // Closing the master hangs the shell up (SIGHUP, 129); one that ignores
      // that is killed with its helper (137).
      assert.ok([129, 137].includes(c.terms.get(term)!.exited!), `${c.terms.get(term)!.exited}`);
      c.close();
      await app.sessions.end(s.session);
    },
  );

  sysTest(
    'the server takes nothing but a pty master from a console socket',
    KERNEL_FREE,
    async () => {
      ready();
      const { addon } = loadNative();
      /** Sends what python opens in `expr` over a fresh console socket; returns receivePty's answer. */
      const receive = (expr: string): number => {
        const [server, helper] = addon.consoleSocket();
        try {
          const r = spawnSync(
            'python3',
            [
              '-c',
              `import os, socket; socket.send_fds(socket.socket(fileno=3), [b'P'], [${expr}])`,
            ],
            { stdio: ['ignore', 'ignore', 'pipe', helper] },
          );
          assert.equal(r.status, 0, r.stderr.toString());
          return addon.receivePty(server);
        } finally {
          addon.closeFd(server);
          addon.closeFd(helper);
        }
      };
      // What a sandboxed helper could send instead: a file, a FIFO, a pty's slave end.
      for (const expr of [
        "os.open('/etc/hostname', os.O_RDONLY)",
        'os.pipe()[0]',
        'os.openpty()[1]',
      ])
        assert.throws(() => receive(expr), /EBADMSG|not a pty master/, expr);
      const fd = receive("os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY)");
      assert.ok(fd >= 0);
      addon.closeFd(fd);
      // Nothing queued yet: -1, at once.
      const [server, helper] = addon.consoleSocket();
      assert.equal(addon.receivePty(server), -1);
      addon.closeFd(server);
      addon.closeFd(helper);
    },
  );

  sysTest(
    'a join helper that cannot start ends its terminal with 125, in words, and leaves no fd behind',
    KERNEL_FREE,
    async () => {
      ready();
      const { addon } = loadNative();
      const fds = () => fs.readdirSync('/proc/self/fd').length;
      const before = fds();
      const tracker = { add() {}, delete() {}, begin() {}, end() {} };
      const failed: Error[] = [];
      const p = new ConsolePty(
        addon,
        '/nonexistent/underlay-nsexec',
        (c) => ['join', '--console-fd', String(c.fd)],
        80,
        24,
        (said, status, startError) =>
          startError ? `could not start: ${startError.message}\r\n` : `said ${said} ${status}`,
        tracker,
      );
      p.onStartFailed((err) => failed.push(err));
      let out = '';
      p.onData((d) => (out += d.toString()));
      const status = await new Promise<number>((resolve) => p.onExit(resolve));
      assert.equal(status, 125);
      assert.match(out, /^could not start: .*ENOENT/);
      assert.equal(failed.length, 1);
      assert.equal(p.pid, 0);
      // The console socket's two ends (and any pipe) are closed again.
      await waitUntil(() => fds() <= before, 'the fds are closed');
    },
  );

  sysTest(
    'a student who removed /dev/ptmx still gets a shell, told why `tty` now fails and how to restore it',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const rm = await app.sessions.get(s.session)!.sandbox.exec(['rm', '/dev/ptmx']);
      assert.equal(rm.code, 0, rm.stderr);
      const c = await connect(s);
      const t = await c.open({});
      assert.ok(t.ok, JSON.stringify(t));
      await c.waitFor(t.term, /# $/);
      assert.match(
        c.terms.get(t.term)!.text,
        /\/dev\/ptmx is unusable[^\n]*ln -sf pts\/ptmx \/dev\/ptmx/,
      );
      assert.equal(
        (await c.run(t.term, 'ln -sf pts/ptmx /dev/ptmx; echo restored')).trim(),
        'restored',
      );
      const again = await c.open({});
      assert.ok(again.ok, JSON.stringify(again));
      assert.match(await c.run(again.term, 'tty'), /^\/dev\/pts\/\d+\r?$/m);
      c.close();
    },
  );

  sysTest(
    'a student who holds every pty of the sandbox still gets a shell, told why and what to close',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const { c, term } = await shell(s);
      // Open ptys until the sandbox's devpts says no more, then hold them.
      await c.input(
        term,
        `python3 -c 'import os,time,sys${'\n'}n=0${'\n'}try:${'\n'} while True: os.open("/dev/ptmx",os.O_RDWR|os.O_NOCTTY); n+=1${'\n'}except OSError as e: print("held",n,e.strerror,flush=True)${'\n'}time.sleep(600)' &\r`,
      );
      await c.waitFor(term, /held \d+ No space left on device/);
      const t = await c.open({});
      assert.ok(t.ok, JSON.stringify(t));
      await c.waitFor(t.term, /# $/);
      const text = c.terms.get(t.term)!.text;
      assert.match(text, /no pty left \(this sandbox's 256 are taken[^\n]*close what holds them/);
      assert.doesNotMatch(text, /ln -sf pts\/ptmx/);
      await c.run(
        t.term,
        'pkill -f time.sleep; while pgrep -f time.sleep >/dev/null; do sleep 0.05; done; echo gone',
      );
      const again = await c.open({});
      assert.ok(again.ok, JSON.stringify(again));
      await c.waitFor(again.term, /# $/);
      assert.match(await c.run(again.term, 'tty'), /^\/dev\/pts\/\d+\r?$/m);
      c.close();
      await app.sessions.end(s.session);
    },
  );

  sysTest(
    'a student who removed /root still gets a shell (in /, told why) and working checks',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const sandbox = app.sessions.get(s.session)!.sandbox;
      const rm = await sandbox.exec(['rm', '-rf', '/root']);
      assert.equal(rm.code, 0, rm.stderr);
      // A check (a trusted exec, default cwd /root) still runs.
      const check = await sandbox.exec(['hostname'], { trusted: true });
      assert.equal(check.code, 0, check.stderr);
      assert.equal(check.stdout.trim(), sandbox.record.hostname);
      const c = await connect(s);
      const t = await c.open({});
      assert.ok(t.ok, JSON.stringify(t));
      await c.waitFor(t.term, /# $/);
      assert.match(c.terms.get(t.term)!.text, /cannot enter \/root[^\n]*starting in \//);
      assert.equal((await c.run(t.term, 'pwd')).trim(), '/');
      c.close();
      await app.sessions.end(s.session);
    },
  );

  sysTest(
    "'─é😀' streamed through the whole path arrives without U+FFFD or loss",
    KERNEL_FREE,
    async () => {
      ready();
      const { c, term } = await shell(a);
      const t = { term };
      const out = await c.run(
        t.term,
        "for i in $(seq 3000); do printf '─é😀'; done; echo",
        20_000 * timeScale(),
      );
      assert.ok(!out.includes('\uFFFD'), 'U+FFFD in the output');
      assert.equal(out.split('─é😀').length - 1, 3000);
    },
  );

  sysTest(
    'the prompt names the namespaces a nested shell entered, and drops them when it exits',
    SYSTEM_NEEDS,
    async () => {
      ready();
      // A session of its own: the others' terminal counts are planned.
      const { c, term } = await shell(await post());
      // eslint-disable-next-line no-control-regex -- the colour escapes are part of the prompt
      const plain = (t: string) => t.replace(/\x1b\[[0-9;]*m/g, '');
      assert.doesNotMatch(plain(c.terms.get(term)?.text ?? ''), /\[[a-z,]+\] root@/);
      // The server told the terminal's own shell its namespaces (so it ran no
      // `stat`): they are the ones it is in, and the marker for that is gone.
      assert.equal(
        (
          await c.run(
            term,
            'echo "${UNDERLAY_NS_TOP-none}"; [ "$UNDERLAY_NS" = "$(echo $(stat -L -c %i /proc/self/ns/{cgroup,ipc,mnt,net,pid,user,uts}))" ] && echo same',
          )
        ).trim(),
        'none\nsame',
      );
      await c.input(term, 'unshare --uts --ipc bash\r');
      // eslint-disable-next-line no-control-regex -- the colour escapes are part of the prompt
      await c.waitFor(term, /\[ipc,uts\]\x1b\[0m \x1b\[1;32mroot@[^\n]*# $/, 20_000 * timeScale());
      await c.input(term, 'unshare --user --map-root-user --net bash\r');
      await c.waitFor(
        term,
        // eslint-disable-next-line no-control-regex -- the colour escapes are part of the prompt
        /\[ipc,net,user,uts\]\x1b\[0m \x1b\[1;32mroot@[^\n]*# $/,
        20_000 * timeScale(),
      );
      // One shell at a time (typed ahead, the echo of a second `exit` can come before a prompt).
      await c.input(term, 'exit\r');
      await c.input(term, 'echo one-u""p\r');
      await c.waitFor(
        term,
        // eslint-disable-next-line no-control-regex -- the colour escapes are part of the prompt
        /one-up\r\n[^\n]*\[ipc,uts\]\x1b\[0m \x1b\[1;32mroot@[^\n]*# $/,
        20_000 * timeScale(),
      );
      await c.input(term, 'exit\r');
      await c.input(term, 'echo back-ho""me\r');
      const back = await c.waitFor(term, /back-home\r\n[^\n]*# $/, 20_000 * timeScale());
      assert.doesNotMatch(plain(back.slice(back.lastIndexOf('back-home'))), /\[[a-z,]+\]/);
    },
  );

  sysTest('the initial size and a resize reach `stty size`', SYSTEM_NEEDS, async () => {
    ready();
    const { c, term } = await shell(a, { cols: 101, rows: 33 });
    const t = { term };
    assert.equal((await c.run(t.term, 'stty size')).trim(), '33 101');
    c.socket.emit('term:resize', { term: t.term, cols: 123, rows: 45 });
    await sleep(100);
    assert.equal((await c.run(t.term, 'stty size')).trim(), '45 123');
  });

  sysTest(
    "two terminals share the sandbox, but the second shell holds only fds 0, 1, 2 (and bash's own)",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const c = await connect(a);
      const t1 = await c.open({});
      const t2 = await c.open({});
      assert.ok(t1.ok && t2.ok);
      await c.waitFor(t1.term, /# $/);
      await c.waitFor(t2.term, /# $/);
      await c.run(t1.term, 'echo from-t1 > /tmp/shared');
      assert.equal((await c.run(t2.term, 'cat /tmp/shared')).trim(), 'from-t1');
      const fds = (await c.run(t2.term, 'ls /proc/$$/fd'))
        .trim()
        .split(/\s+/)
        .map(Number)
        .sort((x, y) => x - y);
      assert.deepEqual(fds, [0, 1, 2, 255], `unexpected fds ${fds}`);
      const links = await c.run(t2.term, 'for f in /proc/$$/fd/*; do readlink $f; done');
      assert.doesNotMatch(links, /ptmx/, "another terminal's pty master leaked in");
    },
  );

  sysTest(
    'reconnecting with an offset replays exactly the missing bytes',
    KERNEL_FREE,
    async () => {
      ready();
      const c1 = await connect(a);
      const t = await c1.open({});
      assert.ok(t.ok);
      await c1.waitFor(t.term, /# $/);
      await c1.input(t.term, 'sleep 0.7; for i in $(seq 200); do echo line-$i; done\r');
      await sleep(200);
      const have = c1.terms.get(t.term)!;
      const cut = have.next;
      const before = Buffer.concat(have.bytes);
      c1.close();
      await sleep(1200); // output keeps coming while nobody is attached
      const c2 = await connect(a);
      const r = await c2.open({ term: t.term, offset: cut });
      assert.ok(r.ok);
      assert.equal(r.offset, cut);
      assert.equal(r.reset, false);
      await c2.waitFor(t.term, 'line-200');
      const full = await connect(a);
      const r0 = await full.open({ term: t.term, offset: 0 });
      assert.ok(r0.ok && r0.offset === 0);
      await full.waitFor(t.term, 'line-200');
      const whole = Buffer.concat(full.terms.get(t.term)!.bytes);
      const resumed = Buffer.concat([before, ...c2.terms.get(t.term)!.bytes]);
      assert.ok(
        whole.subarray(0, resumed.length).equals(resumed),
        'resumed stream differs from the original',
      );
    },
  );

  sysTest(
    'two sockets on one terminal both get its output, each with its own window: a stalled one never blinds or stalls the other',
    KERNEL_FREE,
    async () => {
      ready();
      const s = await post();
      const { c: c1, term } = await shell(s);
      const c2 = await connect(s);
      c2.autoAck = false; // a background tab that does not render
      assert.ok((await c2.open({ term })).ok);
      await flood(c1, term, 700_000);
      const got = c2.received(term);
      assert.ok(
        got <= LIMITS.highWaterBytes + LIMITS.maxMessageBytes,
        `the stalled socket got ${got} bytes unacknowledged`,
      );
      assert.ok(got > 0, 'the second socket got output too');
      // The stalled one catches up once it acks.
      c2.autoAck = true;
      c2.socket.emit('term:ack', { term, bytes: got });
      await c2.waitFor(term, /^END\r?$/m, 20_000 * timeScale());
      for (const c of [c1, c2])
        assert.ok(c.maxMessage <= LIMITS.maxMessageBytes, `a ${c.maxMessage}-byte message`);
      c1.close();
      c2.close();
    },
  );

  sysTest(
    'replay obeys the window and the message size; offset 0 after the buffer wrapped says reset',
    KERNEL_FREE,
    async () => {
      ready();
      const s = await post();
      const { c: c1, term } = await shell(s);
      await flood(c1, term, 1_500_000);
      const late = await connect(s);
      late.autoAck = false;
      const r = await late.open({ term, offset: 0 });
      assert.ok(r.ok);
      assert.equal(r.reset, true, 'byte 0 is gone: the client must clear its screen');
      assert.ok(r.offset > 0);
      await waitUntil(
        () => late.received(term) >= LIMITS.highWaterBytes,
        'the replay fills the window',
      );
      const got = late.received(term);
      assert.ok(got > 0 && got <= LIMITS.highWaterBytes + LIMITS.maxMessageBytes, String(got));
      assert.ok(late.maxMessage <= LIMITS.maxMessageBytes, `a ${late.maxMessage}-byte message`);
      c1.close();
      late.close();
    },
  );

  sysTest(
    'a shell the server opened (as a lab does) reports its exit to every socket',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const session = app.sessions.get(s.session)!;
      const term = app.sessions.openTerminal(session, { name: 'T1', cols: 80, rows: 24 });
      const c1 = await connect(s);
      const c2 = await connect(s);
      assert.ok((await c1.open({ term: term.id })).ok);
      await c1.waitFor(term.id, /# $/);
      await c1.input(term.id, "printf 'last-%s\\n' words; exit 3\r");
      await waitUntil(
        () => c1.terms.get(term.id)?.exited === 3,
        'term:exit on the attached socket',
      );
      // What the shell printed as it left arrived before its exit.
      assert.match(c1.terms.get(term.id)!.text, /^last-words\r?$/m);
      // The other socket never attached, but hears of it too (it may show the tab as ended).
      await waitUntil(() => c2.exits.includes(term.id), 'term:exit on the other socket');
      c1.close();
      c2.close();
    },
  );

  sysTest(
    "a lab's shell outlives the grace period with nobody attached; a bare session's does not",
    KERNEL_FREE,
    async () => {
      ready();
      const lab = await app.sessions.create({ owner: 'student', lab: 'demo' });
      const bare = await post();
      const opened: Record<string, string> = {};
      for (const s of [lab, bare]) {
        const { c, term } = await shell(s);
        await c.input(term, 'kept=yes; sleep 600 &\r');
        await c.waitFor(term, /\[1\] \d+/);
        opened[s.session] = term;
        c.close();
      }
      // Nothing to wait for but time: the grace period (2 s here) must pass unnoticed.
      await waitUntil(
        () => app.sessions.get(bare.session)!.terminals.size === 0,
        "the bare session's idle shell closed",
      );
      const c = await connect(lab);
      const r = await c.open({ term: opened[lab.session] });
      assert.ok(r.ok, 'the lab shell is still there');
      assert.equal(r.reset, false);
      assert.match(
        await c.run(opened[lab.session]!, 'echo $kept; jobs'),
        /yes\n\[1\]\+ +Running +sleep 600 &/,
      );
      c.close();
      await app.sessions.end(lab.session);
    },
  );

  sysTest(
    "a shell that cannot start says why in words, not the helper's raw error record",
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const c = await connect(s);
      // The sandbox's init dies (as if killed from the host): a new shell cannot join it.
      process.kill(app.sessions.get(s.session)!.sandbox.initPid, 'SIGKILL');
      const t = await c.open({});
      assert.ok(t.ok);
      await waitUntil(() => c.terms.get(t.term)?.exited !== undefined, 'the failed shell exits');
      const text = c.terms.get(t.term)!.text;
      assert.doesNotMatch(text, /ERR\t/);
      assert.match(text, /The shell could not start: .+\(step: \w+\)/);
      c.close();
      await app.sessions.end(s.session);
    },
  );

  sysTest('ending a session tells its sockets why and disconnects them', KERNEL_FREE, async () => {
    ready();
    const s = await post();
    const { c } = await shell(s);
    const r = await fetch(`${url}/api/sessions/${s.session}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${s.token}`, 'x-underlay-client': 'terminals.test' },
    });
    assert.equal(r.status, 200);
    await waitUntil(() => c.disconnected !== undefined, 'the socket is disconnected');
    assert.equal(c.disconnected, 'io server disconnect');
    assert.match(c.ended ?? '', /ended/);
  });

  sysTest('Ctrl-C during `yes` returns a prompt', SYSTEM_NEEDS, async () => {
    ready();
    const { c, term } = await shell(a);
    const t = { term };
    await c.input(t.term, 'yes\r');
    await c.waitFor(t.term, 'y\r\ny\r\ny');
    await sleep(1500);
    const st = c.terms.get(t.term)!;
    const mark = st.text.length;
    await c.input(t.term, '\x03');
    await c.input(t.term, 'echo after-$((1+1))\r');
    const end = Date.now() + 5000;
    while (!st.text.slice(mark).includes('after-2') && Date.now() < end) await sleep(10);
    assert.ok(st.text.slice(mark).includes('after-2'), 'no prompt after Ctrl-C');
  });

  sysTest(
    'a 100 KB one-line paste at the prompt runs, and the prompt comes back without another key',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const { c, term } = await shell(b);
      const line = `: ${'x'.repeat(100_000)}; echo pasted-$((2+3))\r`;
      // As the browser sends it: 4096-character chunks, each after the previous one's ack.
      for (let i = 0; i < line.length; i += 4096) await c.input(term, line.slice(i, i + 4096));
      await c.waitFor(term, /pasted-5\r\n[\s\S]*# $/, 30_000 * timeScale());
      c.close();
    },
  );

  sysTest('a 1 MiB paste into `sleep` does not keep a core busy', KERNEL_FREE, async () => {
    ready();
    const { c, term } = await shell(a);
    // The sleep outlasts every window below, so the paste stays blocked
    // throughout; the session's teardown ends it.
    await c.input(term, 'stty -icanon; sleep 600\r');
    await sleep(200);
    const chunk = 'x'.repeat(4096);
    for (let i = 0; i < 256; i++) c.socket.emit('term:input', { term, data: chunk }); // no waiting for acks
    // The busy loop this guards against keeps a whole core for as long as
    // the paste is blocked. Taking in 1 MiB legitimately costs a burst (long
    // under emulation, where the VM tier also runs another stream beside
    // this one), so wait for one quiet second rather than assume which
    // second is quiet: the bug never gives one.
    const figures: number[] = [];
    let last = 1;
    for (let i = 0; i < 15 && last >= 0.4; i++) {
      const u0 = process.cpuUsage();
      const t0 = Date.now();
      await sleep(1000);
      const u = process.cpuUsage(u0);
      last = (u.user + u.system) / 1000 / (Date.now() - t0);
      figures.push(last);
    }
    assert.ok(
      last < 0.4,
      `the server stayed busy while the paste was blocked: ${figures.map((f) => `${(f * 100).toFixed(0)}%`).join(' ')} of a core in successive seconds`,
    );
    c.close();
  });

  sysTest(
    'input for a shell that does not read is capped (1 MiB), not buffered without bound',
    KERNEL_FREE,
    async () => {
      ready();
      const { c, term } = await shell(b); // a holds its 8 terminals by now
      await c.input(term, 'stty -icanon; sleep 30\r');
      // 8 MiB without waiting for acks: before, all of it was kept in the
      // server (200 MiB grew it by 260 MB).
      const chunk = 'y'.repeat(4096);
      for (let i = 0; i < 2048; i++) c.socket.emit('term:input', { term, data: chunk });
      for (let i = 0; i < 500 && !c.errors.some((e) => e.code === 'input-overflow'); i++)
        await sleep(20);
      const overflow = c.errors.find((e) => e.code === 'input-overflow');
      assert.ok(overflow, `no input-overflow error: ${JSON.stringify(c.errors.slice(0, 3))}`);
      assert.equal(overflow.event, 'term:input');
      c.close();
    },
  );

  sysTest("a token for session A cannot attach to session B's terminals", KERNEL_FREE, async () => {
    ready();
    const cb = await connect(b);
    const tb = await cb.open({});
    assert.ok(tb.ok);
    await assert.rejects(
      TermClient.connect(url, { session: b.session, token: a.token }),
      /unauthorized/,
    );
    const ca = await connect(a);
    const r = await ca.open({ term: 't999' });
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.error.code, 'unknown-terminal');
  });

  sysTest('a wrong Origin is refused; a wrong protocol version is named', KERNEL_FREE, async () => {
    ready();
    await assert.rejects(connect(a, { origin: 'http://evil.example' }));
    await assert.rejects(
      TermClient.connect(url, { session: a.session, token: a.token, v: 99 }),
      /protocol version 99/,
    );
    const r = await fetch(`${url}/api/sessions`, {
      method: 'POST',
      headers: { origin: 'http://evil.example' },
    });
    assert.equal(r.status, 403);
  });

  sysTest(
    'malformed, oversized and unknown messages get an error event and leave the server up',
    KERNEL_FREE,
    async () => {
      ready();
      const { c, term } = await shell(await post());
      const t = { term };
      c.socket.emit('term:input', { term: t.term, data: 42 } as never);
      c.socket.emit('term:input', { term: t.term, data: 'x'.repeat(5000) });
      c.socket.emit('term:resize', { term: t.term, cols: 0, rows: 99999 });
      (c.socket as unknown as { emit: (e: string, ...a: unknown[]) => void }).emit('rm -rf', {});
      c.socket.emit('term:input', { term: '../../etc', data: 'x' });
      await waitUntil(() => c.errors.length >= 5, 'an error event for each of the five');
      const codes = c.errors.map((e) => e.code).sort();
      assert.deepEqual(
        codes,
        ['bad-request', 'bad-request', 'bad-request', 'bad-request', 'unknown-event'],
        JSON.stringify(c.errors),
      );
      assert.ok(
        c.errors.some((e) => /term:input: data: Too big/.test(e.message)),
        'the oversized input is named',
      );
      assert.ok(
        c.errors.some((e) => e.event === 'rm -rf'),
        'the unknown event is named',
      );
      assert.equal((await c.run(t.term, 'echo still-$((2*3))')).trim(), 'still-6');
    },
  );

  sysTest(
    'closing a terminal kills what it started (nohup, setsid), not the other terminals',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const c = await connect(await post());
      const t1 = await c.open({});
      const t2 = await c.open({});
      assert.ok(t1.ok && t2.ok);
      await c.waitFor(t1.term, /# $/);
      await c.waitFor(t2.term, /# $/);
      await c.run(
        t1.term,
        'nohup sleep 301 >/dev/null 2>&1 & setsid sleep 302 >/dev/null 2>&1 & true',
      );
      await c.run(t2.term, 'sleep 303 >/dev/null 2>&1 & true');
      c.socket.emit('term:close', { term: t1.term });
      await sleep(500);
      const ps = await c.run(t2.term, 'ps -eo args');
      assert.doesNotMatch(ps, /sleep 30[12]/);
      assert.match(ps, /sleep 303/);
    },
  );

  sysTest(
    'nohup/setsid processes do not survive the end of the session',
    SYSTEM_NEEDS,
    async () => {
      ready();
      const s = await post();
      const { c, term } = await shell(s);
      const t = { term };
      await c.run(
        t.term,
        'nohup sleep 311 >/dev/null 2>&1 & setsid sleep 312 >/dev/null 2>&1 & (sleep 313 &)',
      );
      const base = app.sessions.get(s.session)!.sandbox.record.uidBase;
      assert.ok(pidsOwnedByRange(base).length >= 4);
      const r = await fetch(`${url}/api/sessions/${s.session}`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${s.token}`, 'x-underlay-client': 'terminals.test' },
      });
      assert.equal(r.status, 200);
      for (let i = 0; i < 100 && pidsOwnedByRange(base).length > 0; i++) {
        await testManager().reaper.collectZombies();
        await sleep(20);
      }
      assert.deepEqual(pidsOwnedByRange(base), []);
    },
  );
});

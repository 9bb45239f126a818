/**
 * A class on one host (npm run bench:class): simulated students over the
 * real HTTP + socket.io path of `underlay serve`, as the browser does it.
 *
 * A herd of STUDENTS start the same lab within one second. Then, for
 * MINUTES, each quiet student types commands at a human pace (one key every
 * 120-280 ms, a pause to think after each command), presses Check about
 * every 45 s and reloads the page about every 4 minutes (the page itself,
 * then the session, the socket and T1, as a browser does). NOISY of them (5 by
 * default) run, from the start: a fork bomb, a memory hog, a disk filler, a
 * `yes` flood (read as fast as it comes), and cgroup spam.
 *
 * Printed: start-to-prompt of the herd, keystroke echo of quiet students
 * while the noisy run, Check and reload latency, errors; then, after every
 * student ended their lab, what is left against the baseline taken before
 * the herd: zombies, server fds and RSS, mounts, cgroups, uid ranges and
 * SQLite rows.
 *
 * Environment: STUDENTS (100), NOISY (5), MINUTES (10), LAB (ns-uts-ipc),
 * NOISE (indexes into the noise list, e.g. `3` for only `yes` floods),
 * ECHO_WINDOWS (1: also echo p99 per 20 s of the run), ECHO_SLOW (1: list
 * every echo over 20 ms; diagnostic only, the printing runs on the client's
 * loop while it measures), CLIENT_NICE (e.g. -10: the bench client's threads
 * ahead of the host's other work, as if remote),
 * PANELS (1: every quiet student watches the live panels of PANEL_STEP,
 * private-hostname, as an open lab page does; to compare echo with and without),
 * SERVER_LOG (a file for the server's log, at SERVER_LOG_LEVEL, default warn),
 * WARM (N: the server keeps N warm seats of LAB, docs/operating.md#warm-seats;
 * the bench waits until they are ready before the baseline and the herd, and
 * again after everyone left, before the leak check).
 * CLASS (1: the quiet students are a class's, made with `underlay cohort
 * create` and joined before the baseline; with WARM the class asks for the
 * seats (`--warm`), held for its students, instead of `serve --warm`; the
 * noisy five are not in it; the class is closed after the run).
 * All students come from 127.0.0.1, one client address, so the bench raises
 * the per-address caps (UNDERLAY_PER_CLIENT, UNDERLAY_CONNECTIONS_PER_CLIENT)
 * as an operator would for a classroom behind one NAT.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as os from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { io, type Socket } from 'socket.io-client';
import { startServer, type Server } from '../helpers/browser';
import { CookieClient } from '../helpers/browser-like';
import { cli } from '../helpers/env';

const STUDENTS = Number(process.env.STUDENTS ?? 100);
const NOISY = Number(process.env.NOISY ?? 5);
const MINUTES = Number(process.env.MINUTES ?? 10);
const LAB = process.env.LAB ?? 'ns-uts-ipc';
const STATE_DIR = process.env.UNDERLAY_BENCH_STATE_DIR ?? '/var/lib/underlay-bench';
const UID_BASE = 100000 + 65536 * 3000;
const PANELS = process.env.PANELS === '1';
const CLIENT_NICE = Number(process.env.CLIENT_NICE ?? 0);
const PANEL_STEP = process.env.PANEL_STEP ?? 'private-hostname';
const WARM = Number(process.env.WARM ?? 0);
const CLASS = process.env.CLASS === '1';
let panelUpdates = 0;
/** When each echo sample was taken (for ECHO_WINDOWS=1). */
const echoAt: number[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (a: number, b: number) => a + Math.random() * (b - a);
const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] as number;
};
const fmt = (n: number) => (Number.isNaN(n) ? '-' : n < 10 ? n.toFixed(1) : n.toFixed(0));

const NOISE = [
  ['fork bomb', 'f(){ f|f& };f'],
  [
    'memory hog',
    `while :; do python3 -c 'a=[]
while 1: a.append(bytearray(1<<20))' ; done`,
  ],
  [
    'disk fill',
    'while :; do dd if=/dev/zero of=/tmp/fill bs=1M 2>/dev/null; rm -f /tmp/fill; done',
  ],
  ['yes flood', 'yes'],
  [
    'cgroup spam',
    'cd /sys/fs/cgroup/pids 2>/dev/null || cd /sys/fs/cgroup; while :; do for i in $(seq 500); do mkdir s$i; done; for i in $(seq 500); do rmdir s$i; done; done 2>/dev/null',
  ],
] as const;

const COMMANDS = ['hostname', 'ls /proc/self/ns', 'readlink /proc/$$/ns/uts', 'ipcs -q', 'echo ok'];

interface Figures {
  start: number[];
  echo: number[];
  check: number[];
  reload: number[];
  /** POST session → every terminal of the lab has printed its prompt. */
  allShells: number[];
  errors: string[];
}
const fig: Figures = { start: [], echo: [], check: [], reload: [], allShells: [], errors: [] };
let measuringEcho = false;
let tMeasure = 0;

class Student {
  private readonly http: CookieClient;
  socket: Socket | undefined;
  term = '';
  /** The lab's other terminals (T2, T3). */
  others: string[] = [];
  /** Bytes received (the next offset). */
  offset = 0;
  private unacked = 0;
  private waiters: { re: RegExp; resolve: () => void }[] = [];
  private tail = '';
  private echoWait: { ch: string; t: number } | undefined;
  keys = 0;

  constructor(
    readonly n: number,
    readonly url: string,
  ) {
    this.http = new CookieClient(url);
  }

  /** The lab API as this student's browser would call it (throws on an error status). */
  call(method: string, p: string, body?: unknown): Promise<Record<string, unknown>> {
    return this.http.ok(method, p, body);
  }

  /** The lab page, as a browser's reload fetches it first (rendered by the web app). */
  async page(): Promise<void> {
    const r = await fetch(`${this.url}/labs/${LAB}`, {
      headers: this.http.cookie ? { cookie: this.http.cookie } : {},
    });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`student ${this.n}: page ${r.status}`);
  }

  /** POST session, connect, attach T1, until the prompt (or the replay) is on screen. */
  async open(resume: boolean): Promise<void> {
    const s = (await this.call('POST', `/api/labs/${LAB}/session`)) as {
      session: string;
      token: string;
      terminals: { term: string; name: string }[];
    };
    this.term = s.terminals.find((t) => t.name === 'T1')?.term ?? 't1';
    this.others = s.terminals.filter((t) => t.term !== this.term).map((t) => t.term);
    const sock = io(this.url, {
      transports: ['websocket'],
      auth: { v: 1, session: s.session, token: s.token },
      reconnection: false,
    });
    this.socket = sock;
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('connect_error', reject);
    });
    sock.on('term:output', (m: { term: string; offset: number; data: ArrayBuffer }) => {
      if (m.term !== this.term) return;
      const bytes = Buffer.from(m.data);
      this.offset = m.offset + bytes.length;
      this.unacked += bytes.length;
      if (this.unacked >= 32 * 1024) {
        sock.emit('term:ack', { term: this.term, bytes: this.unacked });
        this.unacked = 0;
      }
      const text = bytes.toString('latin1');
      if (this.echoWait && text.includes(this.echoWait.ch)) {
        if (measuringEcho) {
          const dt = performance.now() - this.echoWait.t;
          this.keys++;
          // ECHO_SLOW=1: each echo over 20 ms, with when it came (echoes
          // that wait together point at one stall, e.g. of the server's loop).
          if (process.env.ECHO_SLOW === '1' && dt > 20)
            console.log(
              `slow echo: student ${this.n} key ${this.keys} ${fmt(dt)} ms ` +
                `at ${((performance.now() - tMeasure) / 1000).toFixed(2)} s (epoch ms ${Date.now()})`,
            );
          fig.echo.push(dt);
          echoAt.push(performance.now());
        }
        this.echoWait = undefined;
      }
      this.tail = (this.tail + text).slice(-4096);
      for (const w of [...this.waiters])
        if (w.re.test(this.tail)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve();
        }
    });
    const prompt = this.until(/# $/);
    const ack = await new Promise<{ ok: boolean }>((resolve) =>
      sock.emit(
        'term:open',
        { term: this.term, cols: 100, rows: 30, ...(resume ? { offset: this.offset } : {}) },
        resolve,
      ),
    );
    if (!ack.ok) throw new Error(`term:open: ${JSON.stringify(ack)}`);
    // A resume replays nothing new when nothing happened: the prompt is
    // already on screen. Its waiter goes (left, it would fail the run a
    // minute later if no prompt came by then).
    if (resume) {
      this.waiters.length = 0;
      return;
    }
    await prompt;
  }

  /** Attaches the other terminals, as the page does once T1 is up, until each shows its prompt. */
  otherShells(ms = 60_000): Promise<unknown> {
    const sock = this.socket as Socket;
    return Promise.all(
      this.others.map(
        (term) =>
          new Promise<void>((resolve, reject) => {
            let text = '';
            const timer = setTimeout(() => reject(new Error(`${term}: no prompt`)), ms);
            const on = (m: { term: string; data: ArrayBuffer }) => {
              if (m.term !== term) return;
              text = (text + Buffer.from(m.data).toString('latin1')).slice(-4096);
              if (!/# $/.test(text)) return;
              clearTimeout(timer);
              sock.off('term:output', on);
              resolve();
            };
            sock.on('term:output', on);
            sock.emit('term:open', { term, cols: 100, rows: 30 }, (ack: { ok: boolean }) => {
              if (ack.ok) return;
              clearTimeout(timer);
              reject(new Error(`term:open ${term}: ${JSON.stringify(ack)}`));
            });
          }),
      ),
    );
  }

  until(re: RegExp, ms = 60_000): Promise<void> {
    this.tail = '';
    return new Promise((resolve, reject) => {
      const w = { re, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`student ${this.n}: no ${re} within ${ms} ms`));
        }
      }, ms).unref();
    });
  }

  send(data: string): void {
    this.socket?.emit('term:input', { term: this.term, data });
  }

  /** Types a command one key at a time, timing each echo; then Enter and the prompt. */
  async type(cmd: string, stop: () => boolean): Promise<void> {
    for (const ch of cmd) {
      if (stop()) return;
      this.echoWait = { ch, t: performance.now() };
      this.send(ch);
      await sleep(rand(120, 280));
    }
    const prompt = this.until(/# $/, 30_000);
    this.send('\r');
    await prompt;
  }

  /** Watch the step's live panels, as an open lab page with its panels on screen does. */
  watchPanels(): void {
    this.socket?.on('panel:data', () => panelUpdates++);
    this.socket?.emit('panel:watch', { step: PANEL_STEP });
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}

async function quiet(s: Student, end: number): Promise<void> {
  let nextCheck = Date.now() + rand(20_000, 70_000);
  let nextReload = Date.now() + rand(120_000, 360_000);
  const stop = () => Date.now() > end;
  // Students read before they type: their first keys do not all land in the
  // same millisecond (without this, 95 first keys at once were the run's
  // slowest echoes: 36-51 ms, the last of them waiting for all the others).
  await sleep(rand(0, 4_000));
  while (!stop()) {
    try {
      await s.type(COMMANDS[Math.floor(Math.random() * COMMANDS.length)] as string, stop);
      await sleep(rand(1_000, 4_000));
      if (Date.now() > nextCheck) {
        const t0 = performance.now();
        await s.call('POST', `/api/labs/${LAB}/steps/private-hostname/check`, {});
        fig.check.push(performance.now() - t0);
        nextCheck = Date.now() + rand(30_000, 60_000);
      }
      if (Date.now() > nextReload) {
        const t0 = performance.now();
        s.close();
        await s.page();
        await s.open(true);
        fig.reload.push(performance.now() - t0);
        if (PANELS) s.watchPanels();
        nextReload = Date.now() + rand(180_000, 300_000);
      }
    } catch (e) {
      fig.errors.push(String(e));
      await sleep(2_000);
    }
  }
}

/** CPU seconds of the server process, and the host's busy/all jiffies. */
function cpuTimes(pid: number): { server: number; busy: number; all: number } {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  const hz = 100;
  const server = (Number(f[11]) + Number(f[12])) / hz;
  const cpu = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const all = cpu.reduce((a, b) => a + b, 0);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return { server, busy: all - idle, all };
}

/** Host state that must come back to baseline. */
function snapshot(server: Server, db: string): Record<string, number> {
  const pid = server.proc.pid as number;
  let zombies = 0;
  let inRange = 0;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (f[0] === 'Z' && Number(f[1]) === pid) zombies++;
      const uid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${d}/status`, 'utf8'))?.[1]);
      if (uid >= UID_BASE && uid < UID_BASE + 65536 * 1000) inRange++;
    } catch {
      // gone meanwhile
    }
  }
  const rss = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  let cgroups = 0;
  for (const line of fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n')) {
    const [, ctrl = '', own = ''] = line.split(':');
    const mount =
      ctrl === ''
        ? fs.existsSync('/sys/fs/cgroup/unified')
          ? '/sys/fs/cgroup/unified'
          : '/sys/fs/cgroup'
        : path.join('/sys/fs/cgroup', ctrl.replace(/^name=/, ''));
    const base = path.join(mount, own, 'underlay');
    if (!fs.existsSync(base)) continue;
    // A directory that goes away while find walks is not an error (a
    // student's cgroup spam, or the last teardown still running).
    const walk = spawnSync('find', [base, '-mindepth', '1', '-type', 'd'], { encoding: 'utf8' });
    cgroups += walk.stdout.split('\n').filter(Boolean).length;
  }
  const d = new Database(db, { readonly: true });
  const count = (t: string) =>
    (d.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
  const out = {
    zombies,
    'sandbox processes': inRange,
    'server fds': fs.readdirSync(`/proc/${pid}/fd`).length,
    'server RSS MiB': Math.round(rss / 1024),
    mounts: fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length - 1,
    cgroups,
    'uid ranges (sandboxes rows)': count('sandboxes'),
    'lab_sessions rows': count('lab_sessions'),
    'progress rows': count('progress'),
    'events rows': count('events'),
  };
  d.close();
  return out;
}

/** Waits until the server's warm seats of LAB are all ready (WARM), up to 20 minutes. */
async function warmSeatsReady(server: Server): Promise<void> {
  const end = Date.now() + 20 * 60_000;
  for (;;) {
    const h = (await fetch(`${server.url}/healthz`).then((r) => r.json())) as {
      warm?: Record<string, { ready: number; preparing: number }>;
    };
    const w = h.warm?.[LAB];
    if (w && w.ready >= WARM && w.preparing === 0) return;
    if (Date.now() > end) throw new Error(`warm seats not ready: ${JSON.stringify(h.warm)}`);
    await sleep(250);
  }
}

/** Busy and idle jiffies (1/100 s) of all CPUs together, from /proc/stat. */
function hostCpu(): { busy: number; idle: number } {
  const f = (fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, idle };
}

/** CLASS=1: a class of the quiet students, asking for WARM seats; its join code and name. */
async function makeClass(): Promise<{ name: string; code: string }> {
  const name = `bench-${Date.now().toString(36)}`;
  const args = ['cohort', 'create', name, '--labs', LAB];
  if (WARM) args.push('--warm', `${LAB}=${WARM}`);
  const r = await cli(args, {
    env: { UNDERLAY_STATE_DIR: STATE_DIR, UNDERLAY_UID_BASE: String(UID_BASE) },
  });
  const code = /code=([A-Z0-9-]+)/.exec(r.stdout)?.[1];
  if (r.code !== 0 || !code) throw new Error(`cohort create: ${r.stderr}`);
  return { name, code };
}

async function main(): Promise<void> {
  const klass = CLASS ? await makeClass() : undefined;
  const server = await startServer(undefined, {
    UNDERLAY_STATE_DIR: STATE_DIR,
    UNDERLAY_UID_BASE: String(UID_BASE),
    UNDERLAY_PER_CLIENT: String(STUDENTS + 50),
    UNDERLAY_CONNECTIONS_PER_CLIENT: String(STUDENTS * 8 + 100),
    UNDERLAY_LOG: process.env.SERVER_LOG_LEVEL ?? 'warn',
    ...(WARM && !CLASS ? { UNDERLAY_WARM: `${LAB}=${WARM}` } : {}),
  });
  // CLIENT_NICE=-10: the bench client (not the server, started above) runs
  // ahead of the host's other work, as browsers on their own machines would.
  if (CLIENT_NICE) os.setPriority(CLIENT_NICE);
  const db = path.join(STATE_DIR, 'underlay.db');
  const students = Array.from({ length: STUDENTS }, (_, i) => new Student(i, server.url));
  try {
    if (klass)
      for (const st of students.slice(NOISY))
        await st.call('POST', '/api/cohorts/join', { code: klass.code, name: `Student ${st.n}` });
    if (WARM) {
      const t = Date.now();
      const c0 = hostCpu();
      await warmSeatsReady(server);
      const c1 = hostCpu();
      console.log(
        `${WARM} warm seats ready in ${((Date.now() - t) / 1000).toFixed(1)} s; host CPU ` +
          `${((c1.busy - c0.busy) / 100).toFixed(1)} s (${(((c1.busy - c0.busy) * 10) / WARM).toFixed(0)} ms per seat)`,
      );
    }
    const before = snapshot(server, db);
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(
      `bench:class: ${STUDENTS} students (${NOISY} noisy) in ${LAB}, ${MINUTES} min, ` +
        `${PANELS ? `quiet students watching ${PANEL_STEP}'s panels, ` : ''}loadavg ${load}`,
    );

    // The noisy students' browsers run in a thread of their own: in a class
    // each student has their own machine, and a client that parses a
    // student's `yes` flood on the same event loop as the quiet students'
    // echoes measured its own lag as theirs (its loop stalled up to 0.2 s).
    // NOISY_SAME_THREAD=1 for the way it was.
    const kinds = (process.env.NOISE ?? '').split(',').filter(Boolean).map(Number);
    const pick = (i: number) =>
      NOISE[kinds.length ? (kinds[i % kinds.length] as number) : i % NOISE.length];
    const sameThread = process.env.NOISY_SAME_THREAD === '1';
    const noisyThread = sameThread
      ? undefined
      : new NoisyThread(
          server.url,
          Array.from({ length: NOISY }, (_, i) => i),
          Array.from({ length: NOISY }, (_, i) => pick(i)?.[1] as string),
        );

    // The herd: everyone opens the lab within one second.
    const t0 = Date.now();
    const herdCpu0 = hostCpu();
    const noisyStarted = noisyThread?.start(t0);
    await Promise.all(
      students.map(async (s, i) => {
        if (noisyThread && i < NOISY) return;
        await sleep(Math.max(0, t0 + (i * 1000) / STUDENTS - Date.now()));
        const t = performance.now();
        try {
          await s.open(false);
          fig.start.push(performance.now() - t);
          await s.otherShells();
          fig.allShells.push(performance.now() - t);
        } catch (e) {
          fig.errors.push(`start ${i}: ${String(e)}`);
        }
      }),
    );
    if (noisyStarted) {
      const r = await noisyStarted;
      fig.start.push(...r.start);
      fig.errors.push(...r.errors);
    }
    const herdCpu1 = hostCpu();
    if (WARM) {
      // With CLASS, seats held for the class: the noisy five (not in it) took none.
      const h = (await fetch(`${server.url}/healthz`).then((r) => r.json())) as {
        warm?: Record<string, unknown>;
      };
      console.log(`warm seats after the herd: ${JSON.stringify(h.warm?.[LAB])}`);
    }
    // CPU of the whole host (every process) until the last first prompt: a
    // steadier figure than the herd's latencies, for comparing two versions.
    console.log(
      `herd started (every shell up) in ${Date.now() - t0} ms; host CPU meanwhile ${((herdCpu1.busy - herdCpu0.busy) / 100).toFixed(1)} s ` +
        `(${(((herdCpu1.busy - herdCpu0.busy) * 10) / STUDENTS).toFixed(0)} ms per start), idle ${((herdCpu1.idle - herdCpu0.idle) / 100).toFixed(1)} s`,
    );

    const noisy = students.slice(0, NOISY);
    // NOISE=0,3 runs only those kinds (to see which one costs what).
    if (sameThread) noisy.forEach((s, i) => s.send(`${pick(i)?.[1]}\r`));
    else await noisyThread?.noise();
    if (PANELS) students.slice(NOISY).forEach((s) => s.watchPanels());
    await sleep(5_000); // let the noise build up before measuring
    // The bench client's own event loop: an echo waits in it too (in a class
    // each browser is on its own machine); printed beside the echo figures.
    const clientLag = monitorEventLoopDelay({ resolution: 1 });
    clientLag.enable();
    measuringEcho = true;
    tMeasure = performance.now();
    const tRun = performance.now();
    const cpu0 = cpuTimes(server.proc.pid as number);
    const end = Date.now() + MINUTES * 60_000;
    await Promise.all(students.slice(NOISY).map((s) => quiet(s, end)));
    measuringEcho = false;
    clientLag.disable();
    // The server's own loop delay over the last full minute of the run.
    const health = (await fetch(`${server.url}/healthz`).then((r) => r.json())) as {
      loopDelayMs?: { p50: number; p99: number; max: number; windowS: number };
    };
    const cpu1 = cpuTimes(server.proc.pid as number);
    const runSecs = (performance.now() - tRun) / 1000;

    // Everyone leaves: end the lab (Ctrl-C the noise first, as a student would not bother to).
    const noisyOffsets = noisyThread
      ? await noisyThread.stop().then((r) => {
          fig.errors.push(...r.errors);
          return r.offsets;
        })
      : noisy.map((s) => s.offset);
    for (const s of students) s.close();
    const tEnd = performance.now();
    await Promise.all(
      students
        .filter((_, i) => !noisyThread || i >= NOISY)
        .map((s) =>
          s.call('DELETE', `/api/labs/${LAB}/session`).catch((e) => fig.errors.push(String(e))),
        ),
    );
    const endMs = performance.now() - tEnd;
    // The pool made again (the baseline was taken with it full); a class's
    // seats are not (its students have the lab now): those left end.
    if (WARM && !CLASS) await warmSeatsReady(server);
    // Wait (up to 20 s) for the state to settle: idle keep-alive connections
    // close after 5 s, reaping is asynchronous.
    let after = snapshot(server, db);
    for (
      let i = 0;
      i < 200 &&
      (after.zombies ||
        (after['sandbox processes'] as number) > (before['sandbox processes'] as number) ||
        (after['server fds'] as number) > (before['server fds'] as number));
      i++
    ) {
      await sleep(100);
      after = snapshot(server, db);
    }

    const row = (name: string, xs: number[]) =>
      `| ${name} | ${fmt(pct(xs, 50))} | ${fmt(pct(xs, 99))} | ${fmt(xs.reduce((m, x) => Math.max(m, x), -Infinity))} | ${xs.length} |`;
    console.log(
      // (The histogram holds the time between its 1 ms ticks: less the 1 ms.)
      `bench client's event loop delay while measuring: p50 ${fmt(clientLag.percentile(50) / 1e6 - 1)} ` +
        `p99 ${fmt(clientLag.percentile(99) / 1e6 - 1)} max ${fmt(clientLag.max / 1e6 - 1)} ms` +
        (CLIENT_NICE ? ` (client at nice ${CLIENT_NICE})` : ''),
    );
    const sl = health.loopDelayMs;
    if (sl)
      console.log(
        `server's event loop delay over the last ${sl.windowS} s: p50 ${sl.p50} p99 ${sl.p99} max ${sl.max} ms`,
      );
    console.log('\n| figure (ms) | p50 | p99 | max | n |\n| --- | --- | --- | --- | --- |');
    console.log(row('herd: POST session → prompt in T1', fig.start));
    console.log(row('herd: POST session → prompt in every terminal', fig.allShells));
    console.log(row('quiet echo (key → echo), noisy five running', fig.echo));
    console.log(row('Check (private-hostname step)', fig.check));
    console.log(row('reload (reconnect + resume T1)', fig.reload));
    if (process.env.ECHO_WINDOWS === '1') {
      // Echo p99 per 20 s of the run: a tail from the start (the herd, the
      // noisy starting) reads differently from one spread over the run.
      const t0 = echoAt[0] ?? 0;
      const windows = new Map<number, number[]>();
      echoAt.forEach((t, i) => {
        const w = Math.floor((t - t0) / 20_000);
        windows.set(w, [...(windows.get(w) ?? []), fig.echo[i] as number]);
      });
      for (const [w, xs] of windows)
        console.log(
          `echo ${w * 20}-${w * 20 + 20} s: p99 ${fmt(pct(xs, 99))} max ${fmt(pct(xs, 100))}`,
        );
    }
    console.log(`\nerrors: ${fig.errors.length}`);
    for (const e of fig.errors.slice(0, 10)) console.log(`  ${e}`);
    const runS = (performance.now() - tRun) / 1000;
    noisy.forEach((_, i) =>
      console.log(
        `noisy ${pick(i)?.[0]}: ${((noisyOffsets[i] ?? 0) / 1e6 / runS).toFixed(2)} MB/s of output read` +
          (noisyThread ? ' (in a thread of its own)' : ''),
      ),
    );
    console.log(
      `server CPU ${(((cpu1.server - cpu0.server) / runSecs) * 100).toFixed(1)}% of a core, ` +
        `host busy ${(((cpu1.busy - cpu0.busy) / (cpu1.all - cpu0.all)) * 100).toFixed(0)}% (all cores)` +
        (PANELS ? `, panel updates ${(panelUpdates / runSecs).toFixed(0)}/s in all` : ''),
    );
    console.log(`all ${STUDENTS} labs ended in ${endMs.toFixed(0)} ms\n`);
    console.log('| left behind | before | after |\n| --- | --- | --- |');
    for (const k of Object.keys(before)) console.log(`| ${k} | ${before[k]} | ${after[k]} |`);
  } finally {
    for (const s of students) s.close();
    await server.stop();
    // Closed: a later run over this state dir does not make its seats.
    if (klass)
      await cli(['cohort', 'close', klass.name], {
        env: { UNDERLAY_STATE_DIR: STATE_DIR, UNDERLAY_UID_BASE: String(UID_BASE) },
      });
    // SERVER_LOG=file: the server's log (SERVER_LOG_LEVEL, default warn), for a run to look into.
    if (process.env.SERVER_LOG) fs.writeFileSync(process.env.SERVER_LOG, server.log());
  }
}

/** The noisy students, driven from a worker thread (see main). */
class NoisyThread {
  private readonly worker: Worker;
  private readonly replies: ((m: Record<string, unknown>) => void)[] = [];

  constructor(url: string, indices: number[], commands: string[]) {
    this.worker = new Worker(__filename, { workerData: { url, indices, commands } });
    this.worker.on('message', (m: Record<string, unknown>) => this.replies.shift()?.(m));
    this.worker.on('error', (e) => {
      console.error('noisy thread:', e);
      process.exit(1);
    });
  }

  private ask<T>(m: Record<string, unknown>): Promise<T> {
    return new Promise((resolve) => {
      this.replies.push((r) => resolve(r as T));
      this.worker.postMessage(m);
    });
  }

  /** Opens their labs on the herd's schedule from t0. */
  start(t0: number): Promise<{ start: number[]; errors: string[] }> {
    return this.ask({ kind: 'start', t0 });
  }

  /** Starts the noise. */
  noise(): Promise<unknown> {
    return this.ask({ kind: 'noise' });
  }

  /** Ends their labs; the bytes each read. */
  async stop(): Promise<{ offsets: number[]; errors: string[] }> {
    const r = await this.ask<{ offsets: number[]; errors: string[] }>({ kind: 'stop' });
    await this.worker.terminate();
    return r;
  }
}

async function noisyWorker(): Promise<void> {
  const { url, indices, commands } = workerData as {
    url: string;
    indices: number[];
    commands: string[];
  };
  const students = indices.map((i) => new Student(i, url));
  parentPort?.on('message', (m: { kind: string; t0: number }) => {
    void (async () => {
      if (m.kind === 'start') {
        await Promise.all(
          students.map(async (s, j) => {
            await sleep(
              Math.max(0, m.t0 + ((indices[j] as number) * 1000) / STUDENTS - Date.now()),
            );
            const t = performance.now();
            try {
              await s.open(false);
              fig.start.push(performance.now() - t);
            } catch (e) {
              fig.errors.push(`start ${indices[j]}: ${String(e)}`);
            }
          }),
        );
        parentPort?.postMessage({ start: fig.start, errors: fig.errors.splice(0) });
      } else if (m.kind === 'noise') {
        // After the whole herd, as in one thread: the herd is timed without noise.
        students.forEach((s, j) => s.send(`${commands[j]}\r`));
        parentPort?.postMessage({});
      } else {
        const offsets = students.map((s) => s.offset);
        for (const s of students) s.close();
        await Promise.all(
          students.map((s) =>
            s.call('DELETE', `/api/labs/${LAB}/session`).catch((e) => fig.errors.push(String(e))),
          ),
        );
        parentPort?.postMessage({ offsets, errors: fig.errors.splice(0) });
      }
    })();
  });
}

if (isMainThread)
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
else void noisyWorker();

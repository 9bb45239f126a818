/**
 * npm run bench:terminal - docs/terminals.md#benchmark-method in one run: a raw node-pty
 * baseline, our server (shells in real sandboxes) and wetty 3.2.0
 * (installed from npm into .bench/, not a product dependency). The client
 * is Node with @xterm/headless as the emulator, reproducing each peer's own
 * ack logic. Prints Markdown for docs/benchmarks.md. Figures, not assertions.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { TextDecoder } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import * as xtermHeadless from '@xterm/headless';
import * as pty from 'node-pty';
import { Server as SocketIoServer } from 'socket.io';
import { io, type Socket } from 'socket.io-client';
import { WebSocket, WebSocketServer } from 'ws';
import { PROTOCOL_VERSION, type SessionCreated } from '../../server/protocol/index';

const REPO = path.resolve(__dirname, '..', '..', '..');
const BENCH_DIR = path.join(REPO, '.bench');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');

type SinkKind = 'headless' | 'null' | { slowBytesPerSec: number };

/** One terminal connection, whatever the server. */
interface Conn {
  send(data: string): void;
  onData(fn: (chunk: Uint8Array | string) => void): void;
  /** What the peer's own client does after processing `n` units. */
  processed(n: number): void;
  close(): void;
}

/** A client: receives, "renders" through a sink, acks like the peer's client. */
class Client {
  received = '';
  processedText = '';
  receivedBytes = 0;
  backlog = 0;
  maxBacklog = 0;
  /** Called on every received chunk (lets waits sleep instead of spinning a core). */
  onReceive: (() => void) | undefined;
  private term: InstanceType<typeof xtermHeadless.Terminal> | undefined;
  private decoder = new TextDecoder();
  private queue: string[] = [];
  private draining = false;

  constructor(
    readonly conn: Conn,
    private readonly sink: SinkKind,
  ) {
    if (sink === 'headless')
      this.term = new xtermHeadless.Terminal({
        cols: 120,
        rows: 30,
        scrollback: 1000,
        allowProposedApi: true,
      });
    conn.onData((chunk) => {
      const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
      const units = typeof chunk === 'string' ? chunk.length : chunk.length;
      this.receivedBytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
      this.received = (this.received + text).slice(-8192);
      this.render(text, units);
      this.onReceive?.();
    });
  }

  private render(text: string, units: number): void {
    if (this.sink === 'null') {
      this.done(text, units);
    } else if (this.sink === 'headless') {
      this.term!.write(text, () => this.done(text, units));
    } else {
      this.queue.push(text);
      this.backlog += text.length;
      this.maxBacklog = Math.max(this.maxBacklog, this.backlog);
      if (!this.draining) void this.drainSlow(this.sink.slowBytesPerSec, units);
    }
  }

  private async drainSlow(rate: number, _units: number): Promise<void> {
    this.draining = true;
    while (this.queue.length) {
      const t = this.queue.shift() as string;
      await sleep((t.length / rate) * 1000);
      this.backlog -= t.length;
      this.done(t, t.length);
    }
    this.draining = false;
  }

  private done(text: string, units: number): void {
    this.processedText = (this.processedText + text).slice(-8192);
    this.conn.processed(units);
    this.onProcessed?.();
  }

  /** Called after every processed chunk (waits sleep on it instead of spinning a core). */
  private onProcessed: (() => void) | undefined;

  /** Resolves once `cond` holds, re-checked on each `hook` call; the client's thread stays idle meanwhile. */
  private waitIdle(
    hook: 'onReceive' | 'onProcessed',
    cond: () => boolean,
    ms: number,
    what: () => string,
  ): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this[hook] = undefined;
        reject(new Error(`timeout waiting for ${what()}`));
      }, ms);
      this[hook] = () => {
        if (!cond()) return;
        clearTimeout(t);
        this[hook] = undefined;
        resolve();
      };
    });
  }

  async waitReceived(s: string, mark = '', ms = 30_000): Promise<void> {
    await this.waitIdle(
      'onReceive',
      () =>
        this.received.includes(s) &&
        (!mark || this.received.slice(this.received.lastIndexOf(mark)).includes(s)),
      ms,
      () => `${JSON.stringify(s)}; got ${JSON.stringify(this.received.slice(-200))}`,
    );
  }

  async waitProcessed(s: string, ms = 120_000): Promise<void> {
    await this.waitIdle(
      'onProcessed',
      () => this.processedText.includes(s),
      ms,
      () => `${JSON.stringify(s)} to be processed`,
    );
    if (this.term) await new Promise<void>((r) => this.term!.write('', r));
  }
}

interface Server {
  name: string;
  pid: number | undefined;
  open(): Promise<Conn>;
  /** How a worker thread opens one more terminal itself (undefined: only in this thread). */
  remote?(): Promise<Remote>;
  stop(): Promise<void>;
}

/** A terminal a worker thread opens over the network, as another browser would. */
type Remote =
  | { kind: 'ours'; url: string; session: SessionCreated }
  | { kind: 'wetty'; url: string };

/** Our protocol: a socket for the session, `term:open`, acks every 32 KiB. */
async function oursConn(sock: Socket): Promise<Conn> {
  const res = await new Promise<{ ok: boolean; term: string }>((resolve) =>
    sock.emit('term:open', { cols: 120, rows: 30 }, resolve as (r: unknown) => void),
  );
  if (!res.ok) throw new Error(`term:open failed: ${JSON.stringify(res)}`);
  const term = res.term;
  let fn: (c: Uint8Array) => void = () => {};
  sock.on('term:output', (m: { term: string; data: ArrayBuffer }) => {
    if (m.term === term) fn(new Uint8Array(m.data));
  });
  let acc = 0;
  return {
    send: (d) => sock.emit('term:input', { term, data: d }),
    onData: (f) => (fn = f),
    processed: (n) => {
      acc += n;
      if (acc >= 32 * 1024) {
        sock.emit('term:ack', { term, bytes: acc });
        acc = 0;
      }
    },
    close: () => sock.emit('term:close', { term }),
  };
}

function oursSocket(url: string, s: SessionCreated): Promise<Socket> {
  const sock = io(url, {
    transports: ['websocket'],
    auth: { v: PROTOCOL_VERSION, session: s.session, token: s.token },
    forceNew: true,
  });
  return new Promise((r) => sock.once('connect', () => r(sock)));
}

/** wetty's protocol: a socket per terminal, `commit` every 2^18 characters. */
async function wettyConn(url: string): Promise<Conn> {
  const sock = io(url, { path: '/socket.io', transports: ['websocket'], forceNew: true });
  let fn: (c: string) => void = () => {};
  sock.on('data', (d: string) => fn(d));
  await new Promise<void>((r) => sock.once('login', () => r()));
  sock.emit('resize', { cols: 120, rows: 30 });
  let acc = 0;
  return {
    send: (d) => sock.emit('input', d),
    onData: (f) => (fn = f),
    processed: (n) => {
      acc += n;
      if (acc >= 2 ** 18) {
        sock.emit('commit', acc);
        acc = 0;
      }
    },
    close: () => sock.close(),
  };
}

// ---- peers ------------------------------------------------------------------

function rawPty(): Server {
  return {
    name: 'raw node-pty (no network)',
    pid: process.pid,
    async open() {
      const p = pty.spawn('bash', ['--norc', '--noprofile'], {
        cols: 120,
        rows: 30,
        env: { ...process.env, PS1: 'P> ' } as Record<string, string>,
      });
      return {
        send: (d) => p.write(d),
        onData: (fn) => void p.onData(fn),
        processed: () => {},
        close: () => p.kill(),
      };
    },
    async stop() {},
  };
}

async function startProcess(
  cmd: string,
  args: string[],
  ready: RegExp,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = ready.exec(out);
      if (m) resolve({ child, match: m });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${out}`)));
  });
}

async function ours(): Promise<Server & { sessions: SessionCreated[]; url: string }> {
  const { child, match } = await startProcess(
    process.execPath,
    [path.join(__dirname, 'terminal-server.js'), '0'],
    /READY (\d+)/,
  );
  const url = `http://127.0.0.1:${match[1]}`;
  const sessions: SessionCreated[] = [];
  const sockets = new Map<string, Socket>();
  let opened = 0;
  const socketFor = async (s: SessionCreated) => {
    let sock = sockets.get(s.session);
    if (!sock) {
      sock = await oursSocket(url, s);
      sockets.set(s.session, sock);
    }
    return sock;
  };
  const newSession = async () => {
    const r = await fetch(`${url}/api/sessions`, {
      method: 'POST',
      headers: { 'x-underlay-client': 'terminal.bench' },
    });
    const s = (await r.json()) as SessionCreated;
    sessions.push(s);
    return s;
  };
  return {
    name: 'Underlay (shell in a sandbox)',
    pid: child.pid,
    url,
    sessions,
    async open() {
      if (opened % 8 === 0) await newSession();
      opened++;
      const s = sessions[sessions.length - 1] as SessionCreated;
      return oursConn(await socketFor(s));
    },
    async remote() {
      return { kind: 'ours', url, session: await newSession() };
    },
    async stop() {
      for (const s of sockets.values()) s.close();
      for (const s of sessions)
        await fetch(`${url}/api/sessions/${s.session}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${s.token}`, 'x-underlay-client': 'terminal.bench' },
        });
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

function ensureWetty(): string | undefined {
  const main = path.join(BENCH_DIR, 'node_modules', 'wetty', 'build', 'main.js');
  if (fs.existsSync(main)) return main;
  fs.mkdirSync(BENCH_DIR, { recursive: true });
  if (!fs.existsSync(path.join(BENCH_DIR, 'package.json')))
    fs.writeFileSync(path.join(BENCH_DIR, 'package.json'), '{"private":true}\n');
  const env = {
    ...process.env,
    ...(fs.existsSync('/usr/include/node/node.h') ? { npm_config_nodedir: '/usr' } : {}),
  };
  const r = spawnSync(
    'npm',
    ['install', '--no-audit', '--no-fund', '--loglevel=error', 'wetty@3.2.0'],
    { cwd: BENCH_DIR, env, stdio: 'inherit' },
  );
  return r.status === 0 && fs.existsSync(main) ? main : undefined;
}

async function wetty(main: string): Promise<Server> {
  const port = 3100 + Math.floor(Math.random() * 500);
  const { child } = await startProcess(
    process.execPath,
    [main, '--host', '127.0.0.1', '--port', String(port), '--command', 'bash --norc --noprofile'],
    /Server started|listening|port/i,
    {
      ...process.env,
      PS1: 'P> ',
    },
  );
  await sleep(300);
  return {
    name: 'wetty 3.2.0 (host shell, no sandbox)',
    pid: child.pid,
    open: () => wettyConn(`http://127.0.0.1:${port}`),
    remote: async () => ({ kind: 'wetty', url: `http://127.0.0.1:${port}` }),
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

// ---- measurements ------------------------------------------------------------

function procStat(pid: number | undefined): {
  cpuMs: number;
  rssKiB: number;
  threads: number;
  fds: number;
} {
  if (!pid) return { cpuMs: NaN, rssKiB: NaN, threads: NaN, fds: NaN };
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 1000 / 100;
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    cpuMs: (Number(rest[11]) + Number(rest[12])) * tick,
    rssKiB: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]),
    threads: Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]),
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
  };
}

async function prompt(c: Client): Promise<void> {
  c.conn.send("PS1='P> '; stty -echoctl\r");
  await c.waitReceived('P> ');
  await sleep(200);
}

/** Keystroke echo, waiting idle for the reply (a busy-polling client would steal one of the 2 cores). */
async function echo(c: Client, n: number): Promise<number[]> {
  const out: number[] = [];
  const next = (pred: () => boolean) =>
    new Promise<void>((resolve) => {
      if (pred()) return resolve();
      c.onReceive = () => {
        if (pred()) {
          c.onReceive = undefined;
          resolve();
        }
      };
    });
  for (let i = 0; i < n; i++) {
    const before = c.received;
    const t0 = now();
    c.conn.send('x');
    await next(() => c.received !== before && c.received.endsWith('x'));
    out.push(now() - t0);
    const b2 = c.received;
    c.conn.send('\x7f');
    await next(() => c.received !== b2);
    await sleep(20);
  }
  return out;
}

/**
 * The transport alone: a bare server in another process echoes a one-byte
 * message back (no pty, no shell, no flow control), timed as `echo` times a
 * keystroke (the client waits idle, 20 ms apart). What any terminal's echo
 * over that transport costs at least on this machine.
 */
async function transportFloor(n: number): Promise<{ name: string; ms: number[] }[]> {
  const { child, match } = await startProcess(
    process.execPath,
    [__filename, '--echo-server'],
    /ECHO (\d+) (\d+)/,
  );
  const timed = async (trip: () => Promise<void>) => {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = now();
      await trip();
      ms.push(now() - t0);
      await sleep(20);
    }
    return ms;
  };
  try {
    const sock = io(`http://127.0.0.1:${match[1]}`, { transports: ['websocket'], forceNew: true });
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const roundTrip = (ev: string) => () =>
      new Promise<void>((r) => {
        sock.once(ev, () => r());
        sock.emit(ev, 'x');
      });
    const out = [
      { name: 'socket.io, text both ways', ms: await timed(roundTrip('text')) },
      // Our terminal's shape: text `term:input` in, binary `term:output` out.
      { name: 'socket.io, text in, binary out', ms: await timed(roundTrip('binary')) },
    ];
    sock.close();
    const ws = new WebSocket(`ws://127.0.0.1:${match[2]}`, { perMessageDeflate: false });
    await once(ws, 'open');
    const wsTrip = () =>
      new Promise<void>((r) => {
        ws.once('message', () => r());
        ws.send('x');
      });
    out.push({ name: 'raw websocket (ws), text', ms: await timed(wsTrip) });
    ws.close();
    return out;
  } finally {
    child.kill('SIGTERM');
  }
}

/** `--echo-server`: the far end of transportFloor, as our server configures socket.io. */
async function echoServer(): Promise<void> {
  const h = http.createServer();
  const sio = new SocketIoServer(h, { perMessageDeflate: false, serveClient: false });
  sio.on('connection', (s) => {
    s.on('text', (m: string) => s.emit('text', m));
    s.on('binary', (m: string) => s.emit('binary', Buffer.from(m)));
  });
  h.listen(0, '127.0.0.1');
  await once(h, 'listening');
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  await once(wss, 'listening');
  wss.on('connection', (ws) => ws.on('message', (m, binary) => ws.send(m, { binary })));
  const port = (a: AddressInfo | string | null) => (a as AddressInfo).port;
  process.stdout.write(`ECHO ${port(h.address())} ${port(wss.address())}\n`);
}

async function flood(c: Client, srv: Server): Promise<{ mbps: number; serverCpuMs: number }> {
  const cpu0 = procStat(srv.pid).cpuMs;
  const b0 = c.receivedBytes;
  const t0 = now();
  c.conn.send('head -c 60000000 /dev/zero | base64 -w0; echo; echo MARK_END_$((40+2))\r');
  await c.waitProcessed('MARK_END_42');
  const ms = now() - t0;
  return {
    mbps: (c.receivedBytes - b0) / 1e6 / (ms / 1000),
    serverCpuMs: procStat(srv.pid).cpuMs - cpu0,
  };
}

async function ctrlC(srv: Server): Promise<{ ms: number; backlogKB: number }> {
  const c = new Client(await srv.open(), { slowBytesPerSec: 5e6 });
  await prompt(c);
  await sleep(300);
  c.conn.send('yes\r');
  await sleep(8000);
  c.conn.send('\x03');
  const t0 = now();
  c.processedText = '';
  // Everything processed from here on is new; the next prompt ends the wait.
  await c.waitProcessed('P> ', 60_000).catch(() => {}); // 60 s: reported as such
  const ms = now() - t0;
  const backlogKB = c.maxBacklog / 1024;
  c.conn.close();
  return { ms, backlogKB };
}

async function fairness(srv: Server): Promise<number[]> {
  const a = new Client(await srv.open(), 'headless');
  const b = new Client(await srv.open(), 'null');
  await prompt(a);
  await prompt(b);
  a.conn.send('yes\r');
  await sleep(500);
  const lat = await echo(b, 200);
  a.conn.send('\x03');
  await sleep(300);
  a.conn.close();
  b.conn.close();
  return lat;
}

/**
 * The same, with A's client (the flood into xterm-headless) in a worker
 * thread, as another browser would be: in one event loop, xterm parsing A's
 * flood in slices of up to 12 ms delays B's echo in the client itself.
 */
async function fairnessApart(srv: Server): Promise<number[]> {
  if (!srv.remote) return [];
  const worker = new Worker(__filename, { workerData: await srv.remote() });
  const said = (what: string) =>
    new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (m: string) => (m === what ? resolve() : reject(new Error(m))));
    });
  await said('flooding');
  const b = new Client(await srv.open(), 'null');
  await prompt(b);
  await sleep(500);
  const lat = await echo(b, 200);
  worker.postMessage('stop');
  await said('stopped');
  await worker.terminate();
  b.conn.close();
  return lat;
}

/** In the worker: open A over the network, flood it with `yes`, render, until told to stop. */
async function floodWorker(): Promise<void> {
  const r = workerData as Remote;
  const conn =
    r.kind === 'ours' ? await oursConn(await oursSocket(r.url, r.session)) : await wettyConn(r.url);
  const a = new Client(conn, 'headless');
  await prompt(a);
  a.conn.send('yes\r');
  parentPort?.postMessage('flooding');
  parentPort?.once('message', async () => {
    a.conn.send('\x03');
    await sleep(300);
    a.conn.close();
    parentPort?.postMessage('stopped');
  });
}

async function idle(
  srv: Server,
  n: number,
): Promise<{
  rssPerTermKiB: number;
  before: ReturnType<typeof procStat>;
  during: ReturnType<typeof procStat>;
  openMs: number;
}> {
  const before = procStat(srv.pid);
  const conns: Conn[] = [];
  const t0 = now();
  for (let i = 0; i < n; i++) {
    const c = new Client(await srv.open(), 'null');
    await c.waitReceived(srv.name.startsWith('Underlay') ? '# ' : 'P> ');
    conns.push(c.conn);
  }
  const openMs = now() - t0;
  await sleep(1000);
  const during = procStat(srv.pid);
  for (const c of conns) c.close();
  return { rssPerTermKiB: (during.rssKiB - before.rssKiB) / n, before, during, openMs };
}

async function main(): Promise<void> {
  const only = process.argv.includes('--only')
    ? process.argv[process.argv.indexOf('--only') + 1]
    : undefined;
  // --phases flood,echo,...: only those measurements (for profiling one of them).
  const phases = process.argv.includes('--phases')
    ? new Set((process.argv[process.argv.indexOf('--phases') + 1] ?? '').split(','))
    : undefined;
  const want = (p: string) => !phases || phases.has(p);
  const lines: string[] = [];
  lines.push(
    `Terminal benchmark - ${new Date().toISOString()} - ${os.cpus().length} cores, Linux ${os.release()}, Node ${process.version}`,
  );
  lines.push('');
  lines.push(
    '| server | attach→prompt ms | echo p50 / p95 / p99 ms | flood into xterm-headless MB/s (server CPU s) | ^C after 8 s of `yes`, 5 MB/s client: prompt ms / max backlog KB | echo in B while A floods p50 / p99 ms | same, the flooding client in a thread of its own p50 / p99 ms | idle: server RSS per terminal |',
  );
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const wettyMain = only && only !== 'wetty' ? undefined : ensureWetty();
  const servers: (() => Promise<Server>)[] = [];
  if (!only || only === 'raw') servers.push(async () => rawPty());
  if (!only || only === 'ours') servers.push(ours);
  if (wettyMain) servers.push(() => wetty(wettyMain));
  let leak = '';
  for (const make of servers) {
    const srv = await make();
    try {
      const t0 = now();
      const c = new Client(await srv.open(), 'headless');
      await prompt(c);
      const attach = now() - t0;
      const e = want('echo') ? await echo(c, 300) : [];
      const fl = want('flood') ? await flood(c, srv) : { mbps: NaN, serverCpuMs: NaN };
      c.conn.close();
      const cc = want('ctrlc') ? await ctrlC(srv) : { ms: NaN, backlogKB: NaN };
      const fair = want('fair') ? await fairness(srv) : [];
      const apart = want('apart') ? await fairnessApart(srv) : [];
      const id = srv.name.startsWith('raw') || !want('idle') ? undefined : await idle(srv, 50);
      lines.push(
        `| ${srv.name} | ${f1(attach)} | ${f2(pct(e, 50))} / ${f2(pct(e, 95))} / ${f2(pct(e, 99))} | ${f1(fl.mbps)} (${f2(fl.serverCpuMs / 1000)}) | ${f1(cc.ms)} / ${f1(cc.backlogKB)} | ${f2(pct(fair, 50))} / ${f2(pct(fair, 99))} | ${f2(pct(apart, 50))} / ${f2(pct(apart, 99))} | ${id ? `${(id.rssPerTermKiB / 1024).toFixed(2)} MB (50 terminals opened in ${f1(id.openMs)} ms)` : '-'} |`,
      );
      if (srv.name.startsWith('Underlay') && want('leak')) {
        // 300 terminals opened and closed: nothing may leak.
        await sleep(1500);
        const base = procStat(srv.pid);
        const ptys0 = Number(fs.readFileSync('/proc/sys/kernel/pty/nr', 'utf8'));
        const t1 = now();
        const conns: Conn[] = [];
        for (let i = 0; i < 300; i++) conns.push(await srv.open());
        const openMs = now() - t1;
        const peak = procStat(srv.pid);
        const ptysPeak = Number(fs.readFileSync('/proc/sys/kernel/pty/nr', 'utf8'));
        for (const x of conns) x.close();
        await sleep(3000);
        const end = procStat(srv.pid);
        const ptys1 = Number(fs.readFileSync('/proc/sys/kernel/pty/nr', 'utf8'));
        leak =
          `300 terminals (38 sessions) opened in ${(openMs / 1000).toFixed(1)} s; server fds ${base.fds} → ${peak.fds} → ${end.fds}, ` +
          `threads ${base.threads} → ${peak.threads} → ${end.threads}, ptys ${ptys0} → ${ptysPeak} → ${ptys1} (before → open → closed).`;
      }
    } finally {
      await srv.stop();
    }
  }
  lines.push('');
  if (leak) lines.push(leak);
  if (want('floor')) {
    lines.push('');
    lines.push('| transport alone (a bare echo server, 1 byte) | round trip p50 / p95 / p99 ms |');
    lines.push('| --- | ---: |');
    for (const f of await transportFloor(300))
      lines.push(
        `| ${f.name} | ${f2(pct(f.ms, 50))} / ${f2(pct(f.ms, 95))} / ${f2(pct(f.ms, 99))} |`,
      );
  }
  process.stdout.write(lines.join('\n') + '\n');
  process.exit(0);
}

if (process.argv.includes('--echo-server'))
  echoServer().catch((err) => {
    process.stderr.write(String(err?.stack ?? err) + '\n');
    process.exit(1);
  });
else if (isMainThread)
  main().catch((err) => {
    process.stderr.write(String(err?.stack ?? err) + '\n');
    process.exit(1);
  });
else void floodWorker();

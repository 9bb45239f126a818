/**
 * A student session: one sandbox, its terminals and a bearer token. (Lab
 * progress and persistence across restarts come with the lab engine and
 * the web app.) Terminals outlive a disconnect for a grace period, then
 * close; closing a terminal kills its cgroup, ending a session tears down
 * the whole sandbox.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { LIMITS, type SessionCreated } from '../protocol/index';
import {
  killCgroups,
  nsInode,
  removeCgroupDirs,
  removeCgroupTrees,
  type Limits,
  type Sandbox,
  type SandboxManager,
} from '../sandbox/index';
import { promptEnv } from '../terminals/prompt';
import { OutputPacer } from '../terminals/pacer';
import { Terminal } from '../terminals/terminal';
import type { Slot } from './admission';
import { RequestError } from '../util/errors';
import { Gate } from '../util/gate';
import type { Logger } from '../util/logger';

export interface TerminalEntry {
  terminal: Terminal;
  cgroupDirs: string[];
}

export interface Session {
  id: string;
  tokenHash: Buffer;
  sandbox: Sandbox;
  terminals: Map<string, TerminalEntry>;
  connections: number;
  graceTimer: NodeJS.Timeout | undefined;
  nextTerm: number;
  createdAt: number;
  /** The student and lab this session belongs to (lab sessions only). */
  owner?: string;
  lab?: string;
  /** Told to the student once, e.g. "the server restarted; your sandbox was kept". */
  notice?: string;
  idleTimer?: NodeJS.Timeout;
  /** Last time a socket attached or left (eviction picks the oldest idle session). */
  lastActive: number;
  /** The admission place this session holds; released when it ends. */
  slot?: Slot;
  /**
   * A warm seat (labs/warm-pool.ts): started ahead for a student to take,
   * owned by nobody yet, never idle-ended.
   */
  warm?: boolean;
}

export interface CreateSessionOptions {
  hostname?: string;
  packages?: readonly string[];
  limits?: Partial<Limits>;
  /** Use this token instead of a random one (lab sessions derive theirs). */
  token?: (id: string) => string;
  owner?: string;
  lab?: string;
  /** The admission place taken for it (sessions/admission.ts); released on failure or end. */
  slot?: Slot;
  /**
   * Runs in the new sandbox before the session is handed out (lab files and
   * setup); not when its kept disk came back with the files of an earlier one.
   */
  prepare?: (sb: Sandbox) => Promise<void>;
  /** Keep the session disk for the next sandbox of this owner and name (CreateOptions.keepDisk). */
  keepDisk?: { owner: string; name: string };
  /** A warm seat (Session.warm): no idle timer until a student takes it. */
  warm?: boolean;
  /** false: short of host disk room or id ranges, refused rather than dropping parked disks (CreateOptions.dropParked). */
  dropParked?: boolean;
}

export interface SessionOptions {
  /** How long a bare session's terminals survive with no client attached (default 5 min; lab shells live as long as their session). */
  graceMs?: number;
  /** How long a session with no client attached lives on before its sandbox ends (default 2 h). */
  idleMs?: number;
  /**
   * How long a session with a kept disk (a lab session) stays with no client
   * before it is parked: its sandbox ends, its files stay for the next start
   * (default 15 min).
   */
  parkMs?: number;
  /** Called once a session has ended (lab sessions forget it in the store). */
  onEnded?: (s: Session) => void;
}

const hash = (token: string) => crypto.createHash('sha256').update(token).digest();

export interface SessionEvents {
  /** A terminal's shell ended (any terminal: opened by a client or by a lab). */
  terminalExit: (s: Session, term: string, code: number) => void;
  /** A session ended (DELETE, lab end or reset, idle); its sockets should go. */
  ended: (s: Session, reason: string) => void;
}

export class SessionManager {
  /**
   * Sandbox starts, shells included, go through here (util/gate.ts): one per
   * core and one more for the waits.
   */
  readonly startGate = new Gate(Math.max(2, os.availableParallelism() + 1));
  private readonly sessions = new Map<string, Session>();
  private readonly listeners: { [K in keyof SessionEvents]: SessionEvents[K][] } = {
    terminalExit: [],
    ended: [],
  };
  private readonly graceMs: number;
  private readonly idleMs: number;
  private readonly parkMs: number;

  /** One for the whole server: floods yield to students typing on a busy host. */
  private readonly pacer = new OutputPacer();

  constructor(
    private readonly sandboxes: SandboxManager,
    private readonly log: Logger,
    private readonly opts: SessionOptions = {},
  ) {
    this.graceMs = opts.graceMs ?? 5 * 60_000;
    this.idleMs = opts.idleMs ?? 2 * 3600_000;
    this.parkMs = opts.parkMs ?? 15 * 60_000;
  }

  async create(opts: CreateSessionOptions = {}): Promise<SessionCreated> {
    let sandbox: Sandbox;
    try {
      sandbox = await this.sandboxes.create({
        hostname: opts.hostname ?? 'lab',
        ...(opts.packages?.length ? { packages: opts.packages } : {}),
        ...(opts.limits ? { limits: opts.limits } : {}),
        ...(opts.keepDisk ? { keepDisk: opts.keepDisk } : {}),
        // A seat nobody asked for yet never costs a student's parked files.
        ...(opts.warm || opts.dropParked === false ? { dropParked: false } : {}),
        ownerKind: 'server',
      });
    } catch (err) {
      opts.slot?.release();
      throw err;
    }
    try {
      if (!sandbox.record.resources.restored) await opts.prepare?.(sandbox);
      this.sandboxes.markDiskReady(sandbox);
    } catch (err) {
      await this.sandboxes.teardownOrQuarantine(sandbox);
      opts.slot?.release();
      throw err;
    }
    return this.adopt(sandbox, opts);
  }

  /** Wraps a running sandbox (new, or re-adopted after a server restart) in a session. */
  adopt(sandbox: Sandbox, opts: Omit<CreateSessionOptions, 'prepare'> = {}): SessionCreated {
    const id = sandbox.id;
    const token = opts.token ? opts.token(id) : crypto.randomBytes(24).toString('base64url');
    // Terminal cgroups of a previous server run may remain (with the jobs the
    // student left running in them): number new terminals past them.
    let nextTerm = 1;
    for (const d of sandbox.record.resources.cgroupDirs) {
      let entries: string[] = [];
      try {
        entries = fs.readdirSync(d);
      } catch {
        continue;
      }
      for (const e of entries) {
        const m = /^t-t(\d+)$/.exec(e);
        if (m) nextTerm = Math.max(nextTerm, Number(m[1]) + 1);
      }
    }
    const s: Session = {
      id,
      tokenHash: hash(token),
      sandbox,
      terminals: new Map(),
      connections: 0,
      graceTimer: undefined,
      nextTerm,
      createdAt: Date.now(),
      lastActive: Date.now(),
      ...(opts.owner ? { owner: opts.owner } : {}),
      ...(opts.lab ? { lab: opts.lab } : {}),
      ...(opts.slot ? { slot: opts.slot } : {}),
      ...(opts.warm ? { warm: true } : {}),
    };
    this.sessions.set(id, s);
    if (!s.warm) this.armIdle(s);
    this.log.info('session created', { session: id, owner: opts.owner, lab: opts.lab });
    return { session: id, token, hostname: sandbox.record.hostname };
  }

  /**
   * A warm seat becomes the student's: their admission place replaces the
   * seat's, and from now on it idles and parks as any lab session.
   */
  handOver(s: Session, owner: string, slot: Slot | undefined): void {
    const old = s.slot;
    s.owner = owner;
    delete s.warm;
    if (slot) s.slot = slot;
    else delete s.slot;
    if (old !== slot) old?.release();
    s.lastActive = Date.now();
    if (s.connections === 0) this.armIdle(s);
    this.log.info('warm seat taken', { session: s.id, owner, lab: s.lab });
  }

  on<K extends keyof SessionEvents>(event: K, listener: SessionEvents[K]): void {
    this.listeners[event].push(listener);
  }

  /**
   * Ends a session nobody has attached to for idleMs (its progress stays in
   * the store); one with a kept disk is parked after parkMs instead: the
   * sandbox ends and holds no memory, the files wait for the next start.
   */
  private armIdle(s: Session): void {
    clearTimeout(s.idleTimer);
    const parks = !!s.sandbox.record.resources.keptDisk;
    s.idleTimer = setTimeout(
      () => {
        if (s.connections !== 0) return;
        this.log.info(parks ? 'session idle: parking it' : 'session idle: ending it', {
          session: s.id,
        });
        void this.end(s.id, parks ? 'parked' : 'the session ended after being idle');
      },
      parks ? this.parkMs : this.idleMs,
    );
    s.idleTimer.unref();
  }

  /** The session if the token matches (constant-time compare), else undefined. */
  authenticate(id: string, token: string): Session | undefined {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const h = hash(token);
    return crypto.timingSafeEqual(h, s.tokenHash) ? s : undefined;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  list(): Session[] {
    return [...this.sessions.values()];
  }

  /**
   * A new terminal in the session. `later`: its shell is spawned through the
   * start gate at low priority (after every start waiting there, so a herd's
   * first prompts come first; ahead of them once someone types into it);
   * meanwhile it can be attached, typed into and resized, and an attached
   * client sees the prompt when the shell starts.
   */
  openTerminal(
    s: Session,
    opts: { name?: string; cols: number; rows: number; later?: boolean },
  ): Terminal {
    if (s.terminals.size >= LIMITS.terminalsPerSession) {
      throw new RequestError(
        'conflict',
        `at most ${LIMITS.terminalsPerSession} terminals per session`,
        {
          hint: 'close a terminal first',
        },
      );
    }
    const id = `t${s.nextTerm++}`;
    const name = opts.name ?? `T${s.nextTerm - 1}`;
    let wanted = false;
    let promote: (() => void) | undefined;
    const terminal = new Terminal(id, name, undefined, opts.cols, opts.rows, {
      pacer: this.pacer,
      paceShare: s, // one student's terminals share one share
      onEarlyInput: () => {
        wanted = true;
        promote?.();
      },
      onExit: (code) => {
        this.log.info('terminal exited', { session: s.id, term: id, code });
        for (const l of this.listeners.terminalExit) l(s, id, code);
      },
    });
    const entry = { terminal, cgroupDirs: [] as string[] };
    if (!opts.later) {
      this.spawnShell(s, entry);
      s.terminals.set(id, entry);
      return terminal;
    }
    s.terminals.set(id, entry);
    // Queued from the next turn of the loop: a start that finds the gate
    // free must not spawn these before it has answered.
    setImmediate(() => {
      const ticket = this.startGate.runLow(async () => {
        // Closed, or its session ended, while it waited.
        if (terminal.cancelled || s.terminals.get(id) !== entry || this.sessions.get(s.id) !== s)
          return;
        try {
          this.spawnShell(s, entry);
        } catch (err) {
          const e = err as Error & { hint?: string };
          this.log.warn('terminal spawn failed', { session: s.id, term: id, error: e.message });
          terminal.fail(`[${e.message}${e.hint ? ` - ${e.hint}` : ''}]`);
          return;
        }
        // Holds its slot until the shell printed: the CPU of its start.
        await terminal.started(2_000);
      });
      promote = ticket.promote;
      if (wanted) promote();
    });
    return terminal;
  }

  /** Spawns the terminal's shell (bash in the sandbox, in a cgroup of its own). */
  private spawnShell(s: Session, entry: { terminal: Terminal; cgroupDirs: string[] }): void {
    const { terminal } = entry;
    const cg = s.sandbox.terminalCgroup(terminal.id);
    let p: ReturnType<Sandbox['spawnPty']>;
    try {
      // An interactive shell that is not a login shell, as `docker exec -it
      // box bash` starts: it reads /etc/bash.bashrc and ~/.bashrc, and PATH
      // comes from the sandbox's environment. A login shell also ran
      // /etc/profile's `id -u` and ~/.profile's `mesg n`: two more forks and
      // execs per terminal (a herd of 100 starts: 91-124 -> 78-79 ms of host
      // CPU per start).
      p = s.sandbox.spawnPty(['bash', '-i'], {
        // The prompt names namespaces the shell entered (terminals/prompt.ts);
        // UNDERLAY_TERMINAL lets a check say which terminal a process came from.
        env: {
          ...promptEnv((k) => nsInode(s.sandbox.initPid, k)),
          UNDERLAY_TERMINAL: terminal.name,
        },
        cgroupProcs: cg.joinProcs,
        ...terminal.size,
      });
    } catch (err) {
      removeCgroupDirs(cg.dirs);
      throw err;
    }
    entry.cgroupDirs.push(...cg.dirs);
    terminal.adopt(p);
    // The helper starts on a pool thread: its pid (or why not) comes later.
    p.onSpawn((pid) => this.log.info('terminal opened', { session: s.id, term: terminal.id, pid }));
    p.onStartFailed((err) =>
      this.log.warn('terminal spawn failed', {
        session: s.id,
        term: terminal.id,
        error: err.message,
      }),
    );
  }

  async closeTerminal(s: Session, id: string): Promise<void> {
    const e = s.terminals.get(id);
    if (!e) return;
    s.terminals.delete(id);
    // Everything the terminal started, nohup/setsid included, lives in its cgroup.
    await killCgroups(s.sandbox.record.resources.cgroupMode, e.cgroupDirs).catch(() => {});
    e.terminal.kill();
    // The killed helper's shell was re-parented to us (the subreaper): reap it,
    // or it stays a zombie and the sandbox's init waits for it forever.
    this.reapSoon();
    try {
      await removeCgroupTrees(e.cgroupDirs);
    } catch (err) {
      this.log.warn('terminal cgroup removal', { session: s.id, term: id, error: String(err) });
    }
  }

  connected(s: Session): void {
    s.connections++;
    s.lastActive = Date.now();
    if (s.graceTimer) clearTimeout(s.graceTimer);
    s.graceTimer = undefined;
    clearTimeout(s.idleTimer);
  }

  disconnected(s: Session): void {
    s.connections = Math.max(0, s.connections - 1);
    if (this.sessions.get(s.id) !== s) return; // ended meanwhile
    s.lastActive = Date.now();
    if (s.connections > 0 || s.graceTimer) return;
    this.armIdle(s);
    // A lab's shells live as long as its session: a student back after lunch
    // finds `$!`, variables and jobs where they were (output waits, paused,
    // while nobody watches). Only bare sessions close idle shells early.
    if (s.lab) return;
    s.graceTimer = setTimeout(() => {
      s.graceTimer = undefined;
      if (s.connections > 0) return;
      this.log.info('grace period over: closing terminals', { session: s.id });
      for (const id of [...s.terminals.keys()]) void this.closeTerminal(s, id);
    }, this.graceMs);
    s.graceTimer.unref();
  }

  /**
   * Ends a session but hands its admission place to the caller (a reset
   * starts the next sandbox in it, instead of behind the line).
   */
  async endKeepingSlot(id: string, reason: string): Promise<Slot | undefined> {
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const slot = s.slot;
    delete s.slot;
    await this.end(id, reason);
    return slot;
  }

  async end(id: string, reason = 'the session was ended'): Promise<boolean> {
    const s = this.sessions.get(id);
    if (!s) return false;
    this.sessions.delete(id);
    for (const l of this.listeners.ended) l(s, reason);
    if (s.graceTimer) clearTimeout(s.graceTimer);
    clearTimeout(s.idleTimer);
    for (const e of s.terminals.values()) e.terminal.kill();
    // A sandbox that cannot be torn down is quarantined and retried; the session ends anyway.
    await this.sandboxes.teardownOrQuarantine(s.sandbox);
    this.reapSoon();
    s.slot?.release();
    this.opts.onEnded?.(s);
    this.log.info('session ended', { session: id });
    return true;
  }

  /**
   * Collects zombies now and a few more times over the next half minute: a
   * killed helper's shell is re-parented to us (the subreaper) when it
   * actually dies, which on a slow host (the emulated guest) is seconds
   * later; housekeeping's 30 s sweep would leave it a zombie until then.
   */
  private reapSoon(): void {
    const sweep = () =>
      void this.sandboxes
        .collectZombies()
        .catch((err) => this.log.error('collecting zombies', { error: String(err) }));
    sweep();
    for (const ms of [200, 1_000, 3_000, 10_000, 30_000]) setTimeout(sweep, ms).unref();
  }

  async endAll(): Promise<void> {
    for (const id of [...this.sessions.keys()]) await this.end(id);
  }

  /**
   * Server shutdown that keeps the sandboxes for the next start to re-adopt
   * (they stay 'server'-owned in the store, with a dead owner): only the
   * terminals close.
   */
  detachAll(): void {
    for (const s of this.sessions.values()) {
      clearTimeout(s.graceTimer);
      clearTimeout(s.idleTimer);
      for (const e of s.terminals.values()) e.terminal.kill();
    }
  }
}

/**
 * The browser side of the terminal protocol (docs/protocol.md), independent
 * of React and xterm: one socket per tab, terminals multiplexed by id, one
 * streaming UTF-8 decoder per terminal (xterm.js 6 loses characters split
 * across Uint8Array writes, xtermjs/xterm.js#6003), acks from the render
 * callback, chunked pastes, and resume-by-offset after a reconnect.
 */
import { io, type Socket } from 'socket.io-client';
import {
  LIMITS,
  PROTOCOL_VERSION,
  type ClassNotice,
  type ClientToServerEvents,
  type PanelUpdate,
  type ProtocolError,
  type ServerToClientEvents,
  type TermOpenResult,
  type WatchAuth,
} from '../../server/protocol/index';

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'ended';

/** What a terminal widget must offer (xterm.js does). */
export interface TerminalView {
  write(data: string, rendered: () => void): void;
  reset(): void;
  /** A read-only view follows the pty's size (it cannot choose one). */
  resize?(cols: number, rows: number): void;
}

/** Who this client is: the session's own (id and token), or an instructor watching it. */
export type ClientAuth = { session: string; token: string } | { watch: WatchAuth };

type ClientSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export class RemoteTerminal {
  /** Offset of the next byte we expect: what we ask for after a reconnect. */
  next = 0;
  exited: number | undefined;
  private decoder = new TextDecoder();
  private rendered = 0;
  private inputChain: Promise<void> = Promise.resolve();
  private resizeTimer: ReturnType<typeof setTimeout> | undefined;
  onExit: ((code: number) => void) | undefined;

  constructor(
    private readonly client: SessionClient,
    readonly id: string,
    readonly name: string,
    private readonly view: TerminalView,
    public cols: number,
    public rows: number,
  ) {}

  /** Output from the server, in order, each byte once. */
  receive(offset: number, data: Uint8Array): void {
    if (offset + data.length <= this.next) return; // already have it (a replay overlap)
    if (offset > this.next && this.next > 0) {
      // A gap: this tab fell more than the server's buffer behind. Start clean.
      this.view.reset();
      this.decoder = new TextDecoder();
    }
    const fresh = offset < this.next ? data.subarray(this.next - offset) : data;
    this.next = Math.max(this.next, offset) + fresh.length;
    const text = this.decoder.decode(fresh, { stream: true });
    const n = fresh.length;
    this.view.write(text, () => {
      // Ack what xterm has actually parsed, in 32 KiB steps (docs/terminals.md#flow-control).
      this.rendered += n;
      if (this.rendered >= LIMITS.ackEveryBytes) {
        this.client.emit('term:ack', { term: this.id, bytes: this.rendered });
        this.rendered = 0;
      }
    });
  }

  /** Re-attach after a reconnect: the server replays from `next`, or says to reset. */
  async reattach(): Promise<void> {
    const res = await this.client.request({
      term: this.id,
      offset: this.next,
      ...(this.client.readOnly ? {} : { cols: this.cols, rows: this.rows }),
    });
    if (!res.ok) {
      this.exited = this.exited ?? -1;
      return;
    }
    this.rendered = 0;
    this.decoder = new TextDecoder();
    if (res.reset) this.view.reset();
    this.next = res.offset;
    if (res.exited) this.exited = res.exited.code;
    if (this.client.readOnly) this.sized(res.cols, res.rows);
  }

  /** The pty's size changed (read-only views follow it). */
  sized(cols: number, rows: number): void {
    this.cols = cols;
    this.rows = rows;
    this.view.resize?.(cols, rows);
  }

  /** Keystrokes and pastes; big pastes go in chunks, each after the previous was taken. */
  input(data: string): Promise<void> {
    if (this.client.readOnly) return Promise.resolve(); // the server would refuse it
    const chunks: string[] = [];
    for (let i = 0; i < data.length; i += LIMITS.inputChars)
      chunks.push(data.slice(i, i + LIMITS.inputChars));
    this.inputChain = this.inputChain.then(async () => {
      for (const chunk of chunks) {
        await new Promise<void>((resolve) => {
          if (!this.client.connected) return resolve(); // dropped while offline, as a real terminal would
          this.client.emit('term:input', { term: this.id, data: chunk }, () => resolve());
        });
      }
    });
    return this.inputChain;
  }

  /** Debounced: fit addons and ResizeObserver fire in bursts (docs/terminals.md#resize). */
  resize(cols: number, rows: number): void {
    if (this.client.readOnly) return;
    const c = Math.max(LIMITS.minDim, Math.min(LIMITS.maxDim, cols));
    const r = Math.max(LIMITS.minDim, Math.min(LIMITS.maxDim, rows));
    if (c === this.cols && r === this.rows) return;
    this.cols = c;
    this.rows = r;
    clearTimeout(this.resizeTimer);
    this.resizeTimer = setTimeout(
      () => this.client.emit('term:resize', { term: this.id, cols: c, rows: r }),
      80,
    );
  }

  close(): void {
    if (!this.client.readOnly) this.client.emit('term:close', { term: this.id });
    this.client.forget(this);
  }

  markExited(code: number): void {
    this.exited = code;
    this.onExit?.(code);
  }
}

export class SessionClient {
  private readonly socket: ClientSocket;
  private readonly terms = new Map<string, RemoteTerminal>();
  private readonly waiting = new Map<string, ((t: RemoteTerminal) => void)[]>();
  private listeners: ((s: ConnectionState, detail?: string) => void)[] = [];
  private errorListeners: ((e: ProtocolError) => void)[] = [];
  private watcherListeners: ((count: number) => void)[] = [];
  private noticeListeners: ((n: ClassNotice) => void)[] = [];
  state: ConnectionState = 'connecting';
  /** How many instructor views watch this session (told by the server). */
  watchers = 0;
  /** An instructor's view: output only. */
  readonly readOnly: boolean;
  private endedBecause: string | undefined;

  /** Creates the client without connecting: connect() opens the socket. */
  constructor(url: string, auth: ClientAuth) {
    this.readOnly = 'watch' in auth;
    this.socket = io(url, {
      transports: ['websocket'],
      auth: { v: PROTOCOL_VERSION, ...auth },
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
      autoConnect: false,
      forceNew: true,
    });
    this.socket.on('connect', () => {
      void Promise.all([...this.terms.values()].map((t) => t.reattach())).then(() =>
        this.setState('connected'),
      );
    });
    this.socket.on('session:ended', ({ reason }) => (this.endedBecause = reason));
    this.socket.on('disconnect', (reason) => {
      if (reason === 'io client disconnect') return this.setState('ended');
      // The server ended the session (it said why just before): nothing to reconnect to.
      if (reason === 'io server disconnect')
        return this.setState('ended', this.endedBecause ?? 'the session was ended');
      this.setState('reconnecting', reason);
    });
    this.socket.on('connect_error', (err) => {
      // A refusal (an ended session, a wrong token, a watch with no live
      // sandbox) is final: the server marks it, and retrying cannot help.
      const fatal = (err as Error & { data?: { fatal?: boolean } }).data?.fatal === true;
      if (fatal || /unauthorized|protocol version/.test(err.message)) {
        this.socket.close();
        this.setState('ended', err.message);
      } else if (this.state !== 'connecting') this.setState('reconnecting', err.message);
    });
    this.socket.on('term:output', ({ term, offset, data }) =>
      this.terms.get(term)?.receive(offset, new Uint8Array(data)),
    );
    this.socket.on('term:exit', ({ term, code }) => this.terms.get(term)?.markExited(code));
    this.socket.on('term:size', ({ term, cols, rows }) => this.terms.get(term)?.sized(cols, rows));
    this.socket.on('session:watchers', ({ count }) => {
      this.watchers = count;
      for (const l of this.watcherListeners) l(count);
    });
    this.socket.on('class:notice', (n) => {
      for (const l of this.noticeListeners) l(n);
    });
    this.socket.on('proto:error', (e) => {
      for (const l of this.errorListeners) l(e);
    });
  }

  /** Opens the socket, also again after close(); nothing while it is open or opening. */
  connect(): void {
    if (this.socket.active) return;
    this.setState('connecting');
    this.socket.connect();
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  onState(l: (s: ConnectionState, detail?: string) => void): () => void {
    this.listeners.push(l);
    l(this.state);
    return () => (this.listeners = this.listeners.filter((x) => x !== l));
  }

  /** The server's complaints about what we sent (proto:error). */
  onError(l: (e: ProtocolError) => void): () => void {
    this.errorListeners.push(l);
    return () => (this.errorListeners = this.errorListeners.filter((x) => x !== l));
  }

  /** Instructor views of this session: now and on every change. */
  onWatchers(l: (count: number) => void): () => void {
    this.watcherListeners.push(l);
    l(this.watchers);
    return () => (this.watcherListeners = this.watcherListeners.filter((x) => x !== l));
  }

  /**
   * Live panels of a lab step while `onData` is subscribed: the server
   * reads them only while watched, and again after a reconnect. One step at
   * a time per connection; the returned function stops it.
   */
  watchPanels(step: string, onData: (u: PanelUpdate) => void): () => void {
    const listener = (u: PanelUpdate) => {
      if (u.step === step) onData(u);
    };
    const watch = () => this.emit('panel:watch', { step });
    this.socket.on('panel:data', listener);
    this.socket.on('connect', watch);
    if (this.socket.connected) watch();
    return () => {
      this.socket.off('panel:data', listener);
      this.socket.off('connect', watch);
      if (this.socket.connected) this.emit('panel:unwatch');
    };
  }

  /** Notices from the class's instructor, as they are sent. */
  onNotice(l: (n: ClassNotice) => void): () => void {
    this.noticeListeners.push(l);
    return () => (this.noticeListeners = this.noticeListeners.filter((x) => x !== l));
  }

  private setState(s: ConnectionState, detail?: string): void {
    this.state = s;
    for (const l of this.listeners) l(s, detail);
  }

  emit<E extends keyof ClientToServerEvents>(
    event: E,
    ...args: Parameters<ClientToServerEvents[E]>
  ): void {
    (this.socket.emit as (e: string, ...a: unknown[]) => void)(event, ...args);
  }

  request(req: Parameters<ClientToServerEvents['term:open']>[0]): Promise<TermOpenResult> {
    return new Promise((resolve) => this.socket.emit('term:open', req, resolve));
  }

  /**
   * Opens a new terminal, or re-attaches to `term` (after a page reload,
   * from offset 0: the server replays what its buffer still holds).
   */
  async open(
    view: TerminalView,
    /** Without cols/rows (re-attaching only), the pty keeps its size. */
    opts: { term?: string; name?: string; cols?: number; rows?: number },
  ): Promise<RemoteTerminal> {
    if (!this.socket.connected)
      await new Promise<void>((r) => this.socket.once('connect', () => r()));
    // Register inside the ack callback itself: replayed output may arrive in
    // the same network read as the ack, before any awaiting code would run.
    return new Promise((resolve, reject) => {
      this.socket.emit('term:open', { ...opts, ...(opts.term ? { offset: 0 } : {}) }, (res) => {
        if (!res.ok) return reject(new Error(res.error.message));
        const t = new RemoteTerminal(this, res.term, res.name, view, res.cols, res.rows);
        t.next = res.offset;
        if (res.exited) t.exited = res.exited.code;
        if (this.readOnly) view.resize?.(res.cols, res.rows);
        this.terms.set(res.term, t);
        for (const w of this.waiting.get(res.term) ?? []) w(t);
        this.waiting.delete(res.term);
        resolve(t);
      });
    });
  }

  /** Terminal `id` once this client has opened it: now, or when a view opens it. */
  whenOpen(id: string): Promise<RemoteTerminal> {
    const t = this.terms.get(id);
    if (t) return Promise.resolve(t);
    return new Promise((resolve) =>
      this.waiting.set(id, [...(this.waiting.get(id) ?? []), resolve]),
    );
  }

  /** Stops routing output to `t` (its view is gone); the shell keeps running. */
  forget(t: RemoteTerminal): void {
    if (this.terms.get(t.id) === t) this.terms.delete(t.id);
  }

  close(): void {
    this.socket.close();
  }
}

/**
 * The live client of each session on this page. A lab's session answer
 * connects its client at once (preconnect), while React is still rendering
 * the page that will use it: the connection's round trips then overlap the
 * render instead of following it. The page takes it with sessionClientFor().
 */
type SessionAuth = { session: string; token: string };
const live = new Map<string, { client: SessionClient; expiry?: ReturnType<typeof setTimeout> }>();
const liveKey = (url: string, auth: SessionAuth) => `${url} ${auth.session} ${auth.token}`;

export function preconnect(url: string, auth: SessionAuth): void {
  const key = liveKey(url, auth);
  if (live.has(key)) return; // already open, or opening
  const client = new SessionClient(url, auth);
  client.connect();
  // Not taken within 10 s (the student went elsewhere): close it.
  const expiry = setTimeout(() => {
    if (live.get(key)?.client !== client) return;
    live.delete(key);
    client.close();
  }, 10_000);
  live.set(key, { client, expiry });
}

/**
 * The session's client: the live one if there is one (preconnected), else a
 * new, unconnected one. Pure enough for render: it registers nothing.
 */
export function sessionClientFor(url: string, auth: SessionAuth): SessionClient {
  return live.get(liveKey(url, auth))?.client ?? new SessionClient(url, auth);
}

/** `client` is in use for its session until the returned function is called. */
export function hold(url: string, auth: SessionAuth, client: SessionClient): () => void {
  const key = liveKey(url, auth);
  const e = live.get(key);
  if (e?.expiry) clearTimeout(e.expiry);
  live.set(key, { client });
  return () => {
    if (live.get(key)?.client === client) live.delete(key);
  };
}

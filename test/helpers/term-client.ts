/**
 * A test client that speaks the terminal protocol like the browser does:
 * one streaming UTF-8 decoder per terminal, acks as it "renders".
 */
import { TextDecoder } from 'node:util';
import { io, type Socket } from 'socket.io-client';
import { timeScale } from '../../server/config';
import {
  PROTOCOL_VERSION,
  type ClientToServerEvents,
  type ProtocolError,
  type ServerToClientEvents,
  type TermOpenResult,
} from '../../server/protocol/index';

export interface TermState {
  text: string;
  bytes: Buffer[];
  /** Offset of the next byte expected. */
  next: number;
  decoder: TextDecoder;
  exited?: number;
}

export class TermClient {
  readonly errors: ProtocolError[] = [];
  readonly terms = new Map<string, TermState>();
  /** Ack what we receive (like a fast browser). Off to simulate a stalled client. */
  autoAck = true;
  /** The largest term:output payload seen. */
  maxMessage = 0;
  /** Why the server ended the session (session:ended), and the disconnect reason. */
  ended: string | undefined;
  disconnected: string | undefined;
  /** Every term:exit seen, attached or not. */
  readonly exits: string[] = [];

  private constructor(readonly socket: Socket<ServerToClientEvents, ClientToServerEvents>) {
    socket.on('proto:error', (e) => this.errors.push(e));
    socket.on('term:output', ({ term, offset, data }) => {
      const st = this.terms.get(term);
      if (!st) return;
      const buf = Buffer.from(data);
      this.maxMessage = Math.max(this.maxMessage, buf.length);
      if (offset !== st.next)
        throw new Error(`gap in ${term}: expected offset ${st.next}, got ${offset}`);
      st.next += buf.length;
      st.bytes.push(buf);
      st.text += st.decoder.decode(buf, { stream: true });
      if (this.autoAck) socket.emit('term:ack', { term, bytes: buf.length });
    });
    socket.on('session:ended', ({ reason }) => (this.ended = reason));
    socket.on('disconnect', (reason) => (this.disconnected = reason));
    socket.on('term:exit', ({ term, code }) => {
      this.exits.push(term);
      const st = this.terms.get(term);
      if (st) st.exited = code;
    });
  }

  static connect(
    url: string,
    auth: Record<string, unknown>,
    opts: { origin?: string } = {},
  ): Promise<TermClient> {
    const socket = io(url, {
      transports: ['websocket'],
      auth: { v: PROTOCOL_VERSION, ...auth },
      reconnection: false,
      forceNew: true,
      // socket.io's own connect timeout (20 s) under a slow or busy host.
      timeout: 20_000 * timeScale(),
      ...(opts.origin ? { extraHeaders: { origin: opts.origin } } : {}),
    }) as Socket<ServerToClientEvents, ClientToServerEvents>;
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(new TermClient(socket)));
      socket.once('connect_error', (err) => {
        socket.close();
        reject(err);
      });
    });
  }

  open(req: {
    term?: string;
    cols?: number;
    rows?: number;
    offset?: number;
    name?: string;
  }): Promise<TermOpenResult> {
    return new Promise((resolve) => {
      this.socket.emit('term:open', { cols: 80, rows: 24, ...req }, (res) => {
        if (res.ok) {
          const prev = this.terms.get(res.term);
          this.terms.set(
            res.term,
            prev && !res.reset
              ? prev
              : {
                  text: '',
                  bytes: [],
                  next: res.offset,
                  decoder: new TextDecoder(),
                  ...(res.exited ? { exited: res.exited.code } : {}),
                },
          );
          const st = this.terms.get(res.term) as TermState;
          st.next = res.offset;
        }
        resolve(res);
      });
    });
  }

  /** Bytes received so far on a terminal. */
  received(term: string): number {
    return (this.terms.get(term)?.bytes ?? []).reduce((n, b) => n + b.length, 0);
  }

  input(term: string, data: string): Promise<void> {
    return new Promise((resolve) =>
      this.socket.emit('term:input', { term, data }, () => resolve()),
    );
  }

  /** Waits until the terminal's decoded text matches. */
  async waitFor(
    term: string,
    pattern: RegExp | string,
    timeoutMs = 10_000 * timeScale(),
  ): Promise<string> {
    const end = Date.now() + timeoutMs;
    // Tested again only when more text came: a poll that re-scans (and
    // flattens) a megabyte of output every 10 ms costs more than the server
    // it waits for, under emulation most of all.
    let seen = -1;
    for (;;) {
      const t = this.terms.get(term)?.text ?? '';
      if (t.length !== seen) {
        seen = t.length;
        if (typeof pattern === 'string' ? t.includes(pattern) : pattern.test(t)) return t;
      }
      if (Date.now() > end)
        throw new Error(
          `timed out waiting for ${pattern} in ${term}; last output: ${JSON.stringify(t.slice(-400))}`,
        );
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Runs a command and returns the text between two markers. */
  async run(term: string, cmd: string, timeoutMs = 10_000 * timeScale()): Promise<string> {
    const tag = Math.random().toString(36).slice(2, 8);
    const begin = `B${tag}`;
    const end = `E${tag}`;
    // The markers are assembled by the shell, so the echoed command line never contains them.
    await this.input(
      term,
      `echo ${begin.slice(0, 2)}''${begin.slice(2)}; ${cmd}; echo ${end.slice(0, 2)}''${end.slice(2)}\r`,
    );
    const text = await this.waitFor(term, new RegExp(`${begin}\\r?\\n[\\s\\S]*${end}`), timeoutMs);
    const m = new RegExp(`${begin}\\r?\\n([\\s\\S]*?)${end}`).exec(text);
    return (m?.[1] ?? '').replace(/\r/g, '');
  }

  close(): void {
    this.socket.close();
  }
}

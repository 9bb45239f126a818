/**
 * The socket.io gateway (docs/terminals.md#transport-and-auth): websocket transport only,
 * auth in middleware before any handler runs (so no shell can start before
 * authorisation), every terminal id checked against the session, every
 * payload validated; bad input gets a `proto:error` and the server stays up.
 */
import type * as http from 'node:http';
import { Server, type Socket } from 'socket.io';
import {
  HandshakeAuth,
  LIMITS,
  PROTOCOL_VERSION,
  TermAck,
  TermClose,
  TermInput,
  TermOpen,
  TermResize,
  PanelWatch,
  parse,
  type ClientToServerEvents,
  type ProtocolError,
  type ServerToClientEvents,
  type TermOpenResult,
  type PanelSpec,
  type WatchAuth,
} from '../protocol/index';
import { PanelFeed } from '../labs/panels';
import type { Session, SessionManager } from '../sessions/session-manager';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import { hostAllowed, originAllowed, type GuardOptions } from './guard';

interface SocketData {
  session: Session;
  /** An instructor's read-only view: output only, never input, resize or close. */
  readOnly: boolean;
  /** Gives back the socket's place in its session's caps (once). */
  release?: () => void;
  /** A read-only view's handshake: checked again while it is open (WATCH_RECHECK_MS). */
  watch?: WatchAuth;
}

/**
 * How often open instructor views are checked again: a view outlives
 * neither the student's place in the class (removed), nor the class
 * (closed, ended), nor the token (a new one in cohorts.yaml).
 */
const WATCH_RECHECK_MS = 2_000;

type GatewaySocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  Record<string, never>,
  SocketData
>;

const KNOWN = new Set([
  'term:open',
  'term:input',
  'term:resize',
  'term:ack',
  'term:close',
  'panel:watch',
  'panel:unwatch',
]);

/** Panel readers one session may run at once (its tabs and an instructor's view). */
const MAX_FEEDS_PER_SESSION = 3;

export interface GatewayOptions extends GuardOptions {
  /**
   * Resolves an instructor's watch request to the student's lab session
   * (transport/instructor-api.ts checks the token); absent, nobody watches.
   * Throws or returns undefined to refuse.
   */
  watch?: (w: WatchAuth) => Session | undefined;
  /**
   * Whether an open view may go on (cheaper than `watch`, asked every
   * WATCH_RECHECK_MS): a reason to close it, or undefined. May throw (a
   * store error): the view is kept and asked again.
   */
  watchStill?: (w: WatchAuth, session: Session) => string | undefined;
  /** The live panels of a step of the session's lab; undefined when it has none. */
  panels?: (session: Session, step: string) => PanelSpec[] | undefined;
}

export function attachGateway(
  server: http.Server,
  sessions: SessionManager,
  log: Logger,
  opts: GatewayOptions = {},
): Server {
  const io = new Server<
    ClientToServerEvents,
    ServerToClientEvents,
    Record<string, never>,
    SocketData
  >(server, {
    transports: ['websocket'],
    perMessageDeflate: false,
    // Well above any valid message (inputs are <= 4096 chars), so a too-large
    // input gets a proper error event; only absurd frames are dropped by
    // socket.io itself, which closes that one connection.
    maxHttpBufferSize: LIMITS.maxMessageBytes * 4,
    pingInterval: 10_000,
    pingTimeout: 20_000,
    allowRequest: (req, cb) => {
      if (!hostAllowed(req, opts)) {
        log.warn('socket refused: host', { host: req.headers.host });
        return cb('host not allowed', false);
      }
      if (originAllowed(req, opts.allowedOrigins)) return cb(null, true);
      log.warn('socket refused: origin', { origin: req.headers.origin, host: req.headers.host });
      cb('origin not allowed', false);
    },
  });
  /** session id -> read-only views connected to it now */
  const watchers = new Map<string, number>();
  /** session id -> panel readers running for it now */
  const feedsOf = new Map<string, number>();
  const tellWatchers = (s: Session) =>
    io.to(`s:${s.id}`).emit('session:watchers', { count: watchers.get(s.id) ?? 0 });

  /**
   * Counts a socket against its session's caps in the middleware itself:
   * socket.io emits `connection` a tick later, and CONNECT packets sent in
   * one burst all passed the check before any of them counted (a red team
   * held 8 views and 30 student sockets). The place is given back on
   * disconnect, or when the transport closes before `connection`.
   */
  const reserve = (socket: GatewaySocket) => {
    const { session, readOnly } = socket.data;
    if (readOnly) watchers.set(session.id, (watchers.get(session.id) ?? 0) + 1);
    else sessions.connected(session);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      if (!readOnly) return sessions.disconnected(session);
      const left = (watchers.get(session.id) ?? 1) - 1;
      if (left > 0) watchers.set(session.id, left);
      else watchers.delete(session.id);
      tellWatchers(session);
    };
    socket.data.release = release;
    socket.conn.once('close', release);
  };

  /** A refusal the client must not retry (docs/protocol.md#handshake): `data.fatal`. */
  const refuse = (message: string) => Object.assign(new Error(message), { data: { fatal: true } });
  io.use((socket, next) => {
    const auth = parse(HandshakeAuth, 'handshake', socket.handshake.auth);
    if (!auth.ok) {
      const v = (socket.handshake.auth as { v?: unknown } | undefined)?.v;
      return next(
        refuse(
          v !== PROTOCOL_VERSION
            ? `protocol version ${String(v)} is not ${PROTOCOL_VERSION}`
            : 'unauthorized',
        ),
      );
    }
    if ('watch' in auth.value) {
      let session: Session | undefined;
      try {
        session = opts.watch?.(auth.value.watch);
      } catch (err) {
        return next(refuse(err instanceof RequestError ? err.message : 'unauthorized'));
      }
      if (!session) return next(refuse('unauthorized'));
      if ((watchers.get(session.id) ?? 0) >= LIMITS.watchersPerSession)
        return next(
          refuse(
            `too many views: at most ${LIMITS.watchersPerSession} watch one student's session`,
          ),
        );
      socket.data.session = session;
      socket.data.readOnly = true;
      socket.data.watch = auth.value.watch;
      reserve(socket);
      return next();
    }
    const session = sessions.authenticate(auth.value.session, auth.value.token);
    if (!session) return next(refuse('unauthorized'));
    if (session.connections >= LIMITS.socketsPerSession)
      return next(
        // Not final: a tab that closes frees a place, and reconnecting then works.
        new Error(`too many connections: at most ${LIMITS.socketsPerSession} per session`),
      );
    socket.data.session = session;
    socket.data.readOnly = false;
    reserve(socket);
    next();
  });

  /** Open instructor views, checked again every WATCH_RECHECK_MS. */
  const views = new Set<GatewaySocket>();
  if (opts.watchStill) {
    const still = opts.watchStill;
    const recheck = setInterval(() => {
      for (const socket of views) {
        const { watch, session } = socket.data;
        if (!watch) continue;
        let why: string | undefined;
        try {
          why = still(watch, session);
        } catch (err) {
          // Not the view's fault (a store error): kept, asked again next time.
          log.warn('checking an open view again failed', { error: String(err) });
          continue;
        }
        if (!why) continue;
        views.delete(socket);
        socket.emit('session:ended', { reason: `no longer watched: ${why}` });
        socket.disconnect(true);
      }
    }, WATCH_RECHECK_MS);
    recheck.unref();
    server.once('close', () => clearInterval(recheck));
  }

  // Every terminal's end goes to every socket of its session; an ended
  // session's sockets are told why and disconnected (their ids mean nothing now).
  sessions.on('terminalExit', (s, term, code) =>
    io.to(`s:${s.id}`).to(`w:${s.id}`).emit('term:exit', { term, code }),
  );
  sessions.on('ended', (s, reason) => {
    for (const room of [`s:${s.id}`, `w:${s.id}`]) {
      io.to(room).emit('session:ended', { reason });
      io.in(room).disconnectSockets(true);
    }
  });

  io.on('connection', (socket: GatewaySocket) => {
    const { session, readOnly } = socket.data;
    /** terminal id -> attachment token, for the terminals this socket watches */
    const attached = new Map<string, number>();
    /** terminal id -> unsubscribe from its resizes (read-only views follow the size) */
    const following = new Map<string, () => void>();
    const fail = (error: ProtocolError) => socket.emit('proto:error', error);
    // A watcher neither keeps the session alive nor counts as the student
    // being there (grace and idle timers see only the student's sockets).
    // Counted already (reserve, in the middleware).
    if (readOnly) {
      void socket.join(`w:${session.id}`);
      tellWatchers(session);
    } else {
      const count = watchers.get(session.id) ?? 0;
      if (count) socket.emit('session:watchers', { count });
    }
    const refuseReadOnly = (event: string): boolean => {
      if (!readOnly) return false;
      fail({
        code: 'read-only',
        event,
        message: `${event}: this is a read-only view of a student's terminals`,
      });
      return true;
    };
    const termOf = (event: string, term: string) => {
      const e = session.terminals.get(term);
      if (!e)
        fail({
          code: 'unknown-terminal',
          event,
          message: `${event}: no terminal '${term}' in this session`,
        });
      return e?.terminal;
    };

    socket.onAny((event: string) => {
      if (!KNOWN.has(event))
        fail({ code: 'unknown-event', event, message: `unknown event '${event}'` });
    });

    socket.on('term:open', (payload, ack) => {
      const reply = (r: TermOpenResult) =>
        typeof ack === 'function' ? ack(r) : r.ok || fail(r.error);
      const p = parse(TermOpen, 'term:open', payload);
      if (!p.ok) return reply({ ok: false, error: p.error });
      const req = p.value;
      if (readOnly && !req.term)
        return reply({
          ok: false,
          error: {
            code: 'read-only',
            event: 'term:open',
            message:
              "term:open: a read-only view attaches to the student's terminals, it opens none",
          },
        });
      let terminal;
      if (req.term) {
        terminal = session.terminals.get(req.term)?.terminal;
        if (!terminal) {
          return reply({
            ok: false,
            error: {
              code: 'unknown-terminal',
              event: 'term:open',
              message: `no terminal '${req.term}' in this session`,
            },
          });
        }
        if (!readOnly && req.cols !== undefined && req.rows !== undefined)
          terminal.resize(req.cols, req.rows);
      } else {
        try {
          terminal = sessions.openTerminal(session, {
            ...(req.name ? { name: req.name } : {}),
            cols: req.cols as number, // the schema requires both for a new terminal
            rows: req.rows as number,
          });
        } catch (err) {
          const code = err instanceof RequestError ? 'too-many-terminals' : 'sandbox-error';
          return reply({
            ok: false,
            error: { code, event: 'term:open', message: (err as Error).message },
          });
        }
      }
      const t = terminal;
      const prev = attached.get(t.id);
      if (prev !== undefined) t.detach(prev);
      if (readOnly && !following.has(t.id))
        following.set(
          t.id,
          t.onResize((cols, rows) => socket.emit('term:size', { term: t.id, cols, rows })),
        );
      // Reply before replaying, so the client knows the offset (and whether to
      // reset) before the first byte arrives; socket.io keeps the order.
      const start = req.offset;
      let info = { offset: 0, reset: false, token: 0 };
      const pendingOut: { offset: number; data: Buffer }[] = [];
      let replied = false;
      info = t.attach((offset, data) => {
        if (!replied) pendingOut.push({ offset, data });
        else socket.emit('term:output', { term: t.id, offset, data });
      }, start);
      attached.set(t.id, info.token);
      reply({
        ok: true,
        term: t.id,
        name: t.name,
        offset: info.offset,
        reset: info.reset,
        ...(t.exited ? { exited: t.exited } : {}),
        ...t.size,
      });
      replied = true;
      for (const o of pendingOut)
        socket.emit('term:output', { term: t.id, offset: o.offset, data: o.data });
    });

    socket.on('term:input', (payload, ack) => {
      if (refuseReadOnly('term:input')) {
        if (typeof ack === 'function') ack({ ok: false });
        return;
      }
      const p = parse(TermInput, 'term:input', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      const t = termOf('term:input', p.value.term);
      if (!t) return;
      void t.input(p.value.data).then((ok) => {
        if (!ok)
          fail({
            code: 'input-overflow',
            event: 'term:input',
            message: `term:input: dropped: ${p.value.term}'s shell is not reading and 1 MiB of input already waits; send the next chunk after the previous one's acknowledgement`,
          });
        if (typeof ack === 'function') ack({ ok });
      });
    });

    socket.on('term:resize', (payload) => {
      if (refuseReadOnly('term:resize')) return;
      const p = parse(TermResize, 'term:resize', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      termOf('term:resize', p.value.term)?.resize(p.value.cols, p.value.rows);
    });

    socket.on('term:ack', (payload) => {
      const p = parse(TermAck, 'term:ack', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      const token = attached.get(p.value.term);
      const t = termOf('term:ack', p.value.term);
      if (t && token !== undefined) t.ack(token, p.value.bytes);
    });

    socket.on('term:close', (payload) => {
      if (refuseReadOnly('term:close')) return;
      const p = parse(TermClose, 'term:close', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      if (!termOf('term:close', p.value.term)) return;
      attached.delete(p.value.term);
      void sessions.closeTerminal(session, p.value.term);
    });

    // Live panels: one reader per socket, only while its page shows them.
    let feed: PanelFeed | undefined;
    const stopFeed = () => {
      if (!feed) return;
      feed.stop();
      feed = undefined;
      feedsOf.set(session.id, (feedsOf.get(session.id) ?? 1) - 1);
    };
    socket.on('panel:watch', (payload) => {
      const p = parse(PanelWatch, 'panel:watch', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      const specs = opts.panels?.(session, p.value.step);
      if (!specs?.length) {
        fail({
          code: 'unknown-step',
          event: 'panel:watch',
          message: `panel:watch: step '${p.value.step}' of this session's lab has no panels`,
        });
        return;
      }
      stopFeed();
      if ((feedsOf.get(session.id) ?? 0) >= MAX_FEEDS_PER_SESSION) {
        fail({
          code: 'bad-request',
          event: 'panel:watch',
          message: `panel:watch: at most ${MAX_FEEDS_PER_SESSION} panel views per session at once`,
        });
        return;
      }
      const f: PanelFeed = new PanelFeed(
        session.sandbox,
        p.value.step,
        specs,
        (u) => socket.emit('panel:data', u),
        () => {
          if (feed === f) stopFeed();
        },
      );
      feed = f;
      feedsOf.set(session.id, (feedsOf.get(session.id) ?? 0) + 1);
      try {
        f.start();
      } catch (err) {
        stopFeed();
        fail({ code: 'sandbox-error', event: 'panel:watch', message: (err as Error).message });
      }
    });
    socket.on('panel:unwatch', () => stopFeed());

    if (!readOnly) void socket.join(`s:${session.id}`);
    else views.add(socket);
    socket.on('disconnect', () => {
      views.delete(socket);
      stopFeed();
      for (const [term, token] of attached) session.terminals.get(term)?.terminal.detach(token);
      attached.clear();
      for (const off of following.values()) off();
      following.clear();
      socket.data.release?.();
    });
  });
  return io;
}

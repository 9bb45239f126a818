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
  parse,
  type ClientToServerEvents,
  type ProtocolError,
  type ServerToClientEvents,
  type TermOpenResult,
} from '../protocol/index';
import type { Session, SessionManager } from '../sessions/session-manager';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import { hostAllowed, originAllowed, type GuardOptions } from './guard';

type GatewaySocket = Socket<
  ClientToServerEvents,
  ServerToClientEvents,
  Record<string, never>,
  { session: Session }
>;

const KNOWN = new Set(['term:open', 'term:input', 'term:resize', 'term:ack', 'term:close']);

export type GatewayOptions = GuardOptions;

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
    { session: Session }
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

  io.use((socket, next) => {
    const auth = parse(HandshakeAuth, 'handshake', socket.handshake.auth);
    if (!auth.ok) {
      const v = (socket.handshake.auth as { v?: unknown } | undefined)?.v;
      return next(
        new Error(
          v !== PROTOCOL_VERSION
            ? `protocol version ${String(v)} is not ${PROTOCOL_VERSION}`
            : 'unauthorized',
        ),
      );
    }
    const session = sessions.authenticate(auth.value.session, auth.value.token);
    if (!session) return next(new Error('unauthorized'));
    if (session.connections >= LIMITS.socketsPerSession)
      return next(
        new Error(`too many connections: at most ${LIMITS.socketsPerSession} per session`),
      );
    socket.data.session = session;
    next();
  });

  // Every terminal's end goes to every socket of its session; an ended
  // session's sockets are told why and disconnected (their ids mean nothing now).
  sessions.on('terminalExit', (s, term, code) =>
    io.to(`s:${s.id}`).emit('term:exit', { term, code }),
  );
  sessions.on('ended', (s, reason) => {
    io.to(`s:${s.id}`).emit('session:ended', { reason });
    io.in(`s:${s.id}`).disconnectSockets(true);
  });

  io.on('connection', (socket: GatewaySocket) => {
    const session = socket.data.session;
    sessions.connected(session);
    /** terminal id -> attachment token, for the terminals this socket watches */
    const attached = new Map<string, number>();
    const fail = (error: ProtocolError) => socket.emit('proto:error', error);
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
        terminal.resize(req.cols, req.rows);
      } else {
        try {
          terminal = sessions.openTerminal(session, {
            ...(req.name ? { name: req.name } : {}),
            cols: req.cols,
            rows: req.rows,
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
      });
      replied = true;
      for (const o of pendingOut)
        socket.emit('term:output', { term: t.id, offset: o.offset, data: o.data });
    });

    socket.on('term:input', (payload, ack) => {
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
      const p = parse(TermClose, 'term:close', payload);
      if (!p.ok) {
        fail(p.error);
        return;
      }
      if (!termOf('term:close', p.value.term)) return;
      attached.delete(p.value.term);
      void sessions.closeTerminal(session, p.value.term);
    });

    void socket.join(`s:${session.id}`);
    socket.on('disconnect', () => {
      for (const [term, token] of attached) session.terminals.get(term)?.terminal.detach(token);
      attached.clear();
      sessions.disconnected(session);
    });
  });
  return io;
}

/**
 * What a request must look like before any handler runs: a Host this server
 * answers to (DNS rebinding), a same-origin Origin or the client header on
 * state changes (CSRF), and no more connections per client than allowed.
 * The rules are documented for client authors in docs/protocol.md#request-rules.
 */
import type * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import type * as stream from 'node:stream';
import { clientOf } from './identity';

/** Clients outside a browser send this header (any value) on state-changing requests. */
export const CLIENT_HEADER = 'x-underlay-client';

export interface GuardOptions {
  /** Origins allowed besides the server's own (UNDERLAY_ALLOWED_ORIGINS). */
  allowedOrigins?: string[];
  /**
   * Host names this server answers to besides IP literals, localhost and the
   * machine's own name (UNDERLAY_ALLOWED_HOSTS): exact names, `*.example.org`, or `*`.
   */
  allowedHosts?: string[];
}

/** The Host header without its port, lower-case; brackets kept for IPv6. */
function hostName(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const h = host.toLowerCase();
  // `[v6]` or `[v6]:port`, nothing else after the bracket.
  if (h.startsWith('[')) return /^(\[[^\]]*\])(?::\d+)?$/.exec(h)?.[1];
  return h.replace(/:\d+$/, '');
}

/**
 * A browser tricked by DNS rebinding sends the attacker's name as Host, so
 * only names known to be this server are answered. IP literals cannot be
 * rebound; localhost and the machine's own name are always this server.
 */
export function hostAllowed(req: http.IncomingMessage, opts: GuardOptions = {}): boolean {
  const h = hostName(req.headers.host);
  if (!h) return false;
  if (net.isIP(h.replace(/^\[|\]$/g, ''))) return true;
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  const me = os.hostname().toLowerCase();
  if (h === me || h === `${me}.local`) return true;
  for (const o of opts.allowedOrigins ?? []) {
    try {
      if (hostName(new URL(o).host) === h) return true;
    } catch {
      // a malformed entry allows nothing
    }
  }
  for (const a of opts.allowedHosts ?? []) {
    const p = a.toLowerCase();
    if (p === '*' || p === h || (p.startsWith('*.') && h.endsWith(p.slice(1)))) return true;
  }
  return false;
}

/** True when a browser's Origin matches the Host it connects to, or an allowed origin. */
export function originAllowed(req: http.IncomingMessage, allowed: string[] = []): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true; // not a browser: CSWSH is a browser attack
  if (allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false;
  }
}

/**
 * Why a state-changing request is refused, or undefined. Browsers always send
 * Origin on POST/DELETE; a request without one must carry CLIENT_HEADER,
 * which a cross-site page cannot add without a CORS preflight this server
 * never grants.
 */
export function stateChangeRefusal(
  req: http.IncomingMessage,
  allowed: string[] = [],
): string | undefined {
  if (req.headers.origin !== undefined)
    return originAllowed(req, allowed) ? undefined : 'origin not allowed';
  const c = req.headers[CLIENT_HEADER];
  if (typeof c === 'string' && c.length > 0 && c.length <= 128) return undefined;
  return `a request without an Origin header must carry an ${CLIENT_HEADER} header (docs/protocol.md)`;
}

/**
 * Caps open TCP connections per client and in all. Over a cap the
 * connection gets a one-line 503 and is closed before any HTTP parsing.
 */
export function limitConnections(
  server: http.Server,
  opts: { perClient: number; total: number },
): { open: () => number } {
  const perClient = new Map<string, number>();
  let open = 0;
  server.on('connection', (sock: stream.Duplex & net.Socket) => {
    const client = clientOf({ socket: sock } as http.IncomingMessage);
    const n = perClient.get(client) ?? 0;
    if (n >= opts.perClient || open >= opts.total) {
      sock.end(
        'HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-type: text/plain\r\nretry-after: 10\r\n\r\n' +
          (open >= opts.total
            ? 'the server has too many connections\n'
            : 'too many connections from your address\n'),
      );
      sock.destroySoon?.();
      return;
    }
    perClient.set(client, n + 1);
    open++;
    sock.once('close', () => {
      open--;
      const m = (perClient.get(client) ?? 1) - 1;
      if (m <= 0) perClient.delete(client);
      else perClient.set(client, m);
    });
  });
  return { open: () => open };
}

/**
 * Who is asking: the student (a server-signed id in a cookie) and the client
 * (the remote address, the key of per-client limits).
 *
 * Students are anonymous: the first API call mints a random id and sets it
 * in an httpOnly cookie as `<id>.<signature>`. A cookie whose signature does
 * not verify is not a student: a client cannot pick an id (another student's,
 * or a fresh one per request to dodge per-student limits); it gets a new one
 * of its own, and minting is rate-limited per client.
 */
import * as crypto from 'node:crypto';
import type * as http from 'node:http';
import * as net from 'node:net';
import type { Admission } from '../sessions/admission';
import { RequestError } from '../util/errors';

export const STUDENT_COOKIE = 'underlay_student';

/**
 * The client a request comes from: its address, IPv6 by /64 (one host
 * usually holds a whole /64, so single v6 addresses are free to an attacker).
 */
export function clientOf(req: http.IncomingMessage): string {
  const a = (req.socket.remoteAddress ?? 'unknown').replace(/^::ffff:/, '');
  if (!net.isIPv6(a)) return a;
  const full = expandV6(a);
  return full ? `${full.slice(0, 4).join(':')}::/64` : a;
}

function expandV6(a: string): string[] | undefined {
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  if (t.some((p) => p.includes('.')) || h.some((p) => p.includes('.'))) return undefined;
  const fill = 8 - h.length - t.length;
  if (fill < 0) return undefined;
  return [...h, ...Array<string>(tail !== undefined ? fill : 0).fill('0'), ...t];
}

/**
 * Whether this request may create a student. Another site can make a
 * browser send requests here (an image, a script, a frame) that would each
 * mint an id and drain the minting budget of everyone behind the same
 * address; browsers label those with Fetch Metadata. Allowed: requests
 * from this site, top-level navigations (a link from an LMS), and clients
 * that send no metadata (not a browser).
 */
function mayMint(req: http.IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site === undefined || site === 'same-origin' || site === 'same-site' || site === 'none')
    return true;
  return (
    req.headers['sec-fetch-mode'] === 'navigate' && req.headers['sec-fetch-dest'] === 'document'
  );
}

export class StudentIds {
  constructor(
    private readonly secret: string,
    private readonly opts: {
      admission?: Admission;
      /** Unsigned ids accepted as they are (serve: ids active before it first signed ids). */
      known?: (id: string) => boolean;
    } = {},
  ) {}

  /** An HMAC of `id` for one purpose ('student' cookie, 'resume' key): neither makes the other. */
  private mac(purpose: 'student' | 'resume', id: string): string {
    return crypto
      .createHmac('sha256', this.secret)
      .update(`${purpose}:${id}`)
      .digest()
      .subarray(0, 16)
      .toString('base64url');
  }

  private sign(id: string): string {
    return this.mac('student', id);
  }

  /** Whether `sig` is `id`'s HMAC for `purpose` (constant time). */
  private macMatches(purpose: 'student' | 'resume', id: string, sig: string): boolean {
    const want = Buffer.from(this.mac(purpose, id));
    const got = Buffer.from(sig);
    return want.length === got.length && crypto.timingSafeEqual(want, got);
  }

  /**
   * A student's resume key (docs/classroom.md#another-device): opened in
   * another browser, it makes that browser the same student. A bearer
   * secret like the cookie itself, signed for another purpose, so neither
   * can be made from the other.
   */
  resumeKey(id: string): string {
    return `${id}.${this.mac('resume', id)}`;
  }

  /** The student of a resume key; throws 403 for a key that does not verify. */
  resumeOwner(key: string): string {
    const m = /^([A-Za-z0-9_-]{22,64})\.([A-Za-z0-9_-]{22})$/.exec(key.trim());
    if (!m || !this.macMatches('resume', m[1] as string, m[2] as string))
      throw new RequestError('forbidden', 'this is not a resume link of this server', {
        hint: 'Copy the whole link from the browser where you joined (the Join page shows it), or join again with the class code.',
      });
    return m[1] as string;
  }

  /** Makes this browser the student of a resume key; throws 403 for a key that does not verify. */
  resume(key: string, res: http.ServerResponse): string {
    const id = this.resumeOwner(key);
    this.setCookie(res, id);
    return id;
  }

  private setCookie(res: http.ServerResponse, id: string): void {
    res.setHeader(
      'set-cookie',
      `${STUDENT_COOKIE}=${id}.${this.sign(id)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000`,
    );
  }

  /** The verified id in the cookie, if any. */
  verify(cookieHeader: string | undefined): string | undefined {
    const m = new RegExp(
      `(?:^|;\\s*)${STUDENT_COOKIE}=([A-Za-z0-9_-]{22,64})(?:\\.([A-Za-z0-9_-]{22}))?(?:;|$)`,
    ).exec(cookieHeader ?? '');
    if (!m) return undefined;
    const id = m[1] as string;
    if (m[2] === undefined) return undefined;
    return this.macMatches('student', id, m[2]) ? id : undefined;
  }

  /**
   * Sets a student cookie on a page load that has none, so that the page's
   * first API calls, sent in parallel, all carry the same id (each would
   * otherwise mint its own). Best effort: a client over its minting rate
   * gets the page anyway, and its first API call answers 429.
   */
  ensure(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.verify(req.headers.cookie)) return;
    try {
      this.get(req, res);
    } catch {
      // rate-limited: see above
    }
  }

  /**
   * The student of this request; mints one (and sets the cookie) if the
   * cookie is missing or forged. Throws 429 when this client mints too many.
   */
  get(req: http.IncomingMessage, res: http.ServerResponse): string {
    const ok = this.verify(req.headers.cookie);
    if (ok) return ok;
    let id: string | undefined;
    const legacy = new RegExp(`(?:^|;\\s*)${STUDENT_COOKIE}=([A-Za-z0-9_-]{22,64})(?:;|$)`).exec(
      req.headers.cookie ?? '',
    )?.[1];
    if (legacy && this.opts.known?.(legacy)) id = legacy;
    if (!id) {
      if (!mayMint(req))
        throw new RequestError('forbidden', 'a new student starts from a page of this site', {
          hint: 'Open the lab from its page (a link or the address bar) instead.',
        });
      this.opts.admission?.take('identity', clientOf(req));
      id = crypto.randomBytes(18).toString('base64url');
    }
    this.setCookie(res, id);
    return id;
  }
}

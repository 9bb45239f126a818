/**
 * A request the server or CLI refuses: bad input, an unknown id, a conflict
 * with the current state. Not a kernel or sandbox failure (that is
 * SandboxError in sandbox/errors.ts). HTTP statuses and CLI exit codes come
 * from the kind, never from guessing at an errno.
 */
export type RequestErrorKind =
  /** The input is malformed or impossible (HTTP 400). */
  | 'invalid'
  /** No such lab, step, session or sandbox (HTTP 404). */
  | 'not-found'
  /** Valid, but not in the current state, e.g. no sandbox yet (HTTP 409). */
  | 'conflict'
  /** Not allowed for this caller (HTTP 403). */
  | 'forbidden'
  /** This host cannot do it, e.g. a cgroup v2 lab on a v1 host (HTTP 409). */
  | 'unsupported'
  /** The host is not ready for it yet, e.g. no base image built (HTTP 503). */
  | 'unavailable'
  /** Too many requests of this kind from this student or client; retry later (HTTP 429). */
  | 'rate-limited'
  /** Every sandbox place is taken; the caller has a place in line (HTTP 503). */
  | 'full';

const STATUS: Record<RequestErrorKind, number> = {
  invalid: 400,
  'not-found': 404,
  conflict: 409,
  forbidden: 403,
  unsupported: 409,
  unavailable: 503,
  'rate-limited': 429,
  full: 503,
};

export class RequestError extends Error {
  readonly kind: RequestErrorKind;
  /** What the user can do about it, when we know. */
  readonly hint: string | undefined;
  /** When a retry may succeed (rate-limited, full): the Retry-After header. */
  readonly retryAfterMs: number | undefined;
  /** The caller's place in line (full). */
  readonly queuePosition: number | undefined;
  /** What the host is short of, when that is why (unavailable): a warm seat may give it up. */
  readonly short: 'host-disk' | 'id-ranges' | undefined;

  constructor(
    kind: RequestErrorKind,
    message: string,
    opts: {
      hint?: string;
      retryAfterMs?: number;
      queuePosition?: number;
      short?: 'host-disk' | 'id-ranges';
    } = {},
  ) {
    super(message);
    this.name = 'RequestError';
    this.kind = kind;
    this.hint = opts.hint;
    this.retryAfterMs = opts.retryAfterMs;
    this.queuePosition = opts.queuePosition;
    this.short = opts.short;
  }

  get status(): number {
    return STATUS[this.kind];
  }
}

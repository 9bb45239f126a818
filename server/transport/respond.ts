/** JSON answers and the one mapping from an error to an HTTP status. */
import type * as http from 'node:http';
import type { ApiError } from '../protocol/index';
import { SandboxError } from '../sandbox/errors';
import { RequestError } from '../util/errors';

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json',
    'cache-control': 'no-store',
  };
  const retry = (body as ApiError | undefined)?.retryAfterMs;
  if (typeof retry === 'number')
    headers['retry-after'] = String(Math.max(1, Math.ceil(retry / 1000)));
  res.writeHead(status, headers);
  res.end(JSON.stringify(body));
}

/**
 * An error as an HTTP answer: a refused request by its kind (400/403/404/
 * 409/503), a sandbox failure as 503 with the failed step and a hint, and
 * anything else as 500 without internals.
 */
export function errorResponse(err: unknown): { status: number; body: ApiError } {
  if (err instanceof RequestError)
    return {
      status: err.status,
      body: {
        error: err.message,
        ...(err.hint ? { hint: err.hint } : {}),
        ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
        ...(err.queuePosition !== undefined ? { queue: { position: err.queuePosition } } : {}),
      },
    };
  if (err instanceof SandboxError)
    return {
      status: 503,
      body: {
        error: err.message,
        ...(err.step ? { step: err.step } : {}),
        ...(err.hint ? { hint: err.hint } : {}),
      },
    };
  return { status: 500, body: { error: 'internal error' } };
}

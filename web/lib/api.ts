/**
 * The lab API from the browser (server/transport/lab-api.ts). Every call
 * sends the student cookie; failures throw an ApiFailure carrying the
 * server's message, named step and hint - never a stack trace.
 */
import type { ApiError } from '../../server/protocol/index';

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiError,
  ) {
    super(body.error);
  }
}

export async function api<T>(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<T> {
  let r: Response;
  try {
    r = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: {
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...headers,
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch {
    throw new ApiFailure(0, {
      error: 'The server is unreachable.',
      hint: 'Check that `underlay serve` is running; this page retries when you try again.',
    });
  }
  const text = await r.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiFailure(r.status, {
      error: `Unexpected answer from the server (HTTP ${r.status}).`,
    });
  }
  if (!r.ok) throw new ApiFailure(r.status, data as ApiError);
  return data as T;
}

export function describeError(e: unknown): { message: string; step?: string; hint?: string } {
  if (e instanceof ApiFailure)
    return {
      message: e.body.error,
      ...(e.body.step ? { step: e.body.step } : {}),
      ...(e.body.hint ? { hint: e.body.hint } : {}),
    };
  return { message: e instanceof Error ? e.message : String(e) };
}

/**
 * Requests started ahead of time: a click on a lab card starts the sandbox
 * and fetches the lab while the browser is still loading the lab page. The
 * lab page takes them (once) instead of asking again.
 */
const early = new Map<string, Promise<unknown>>();

export function prefetch<T>(method: string, url: string): void {
  const p = api<T>(method, url);
  p.catch(() => {}); // the taker sees the error
  early.set(`${method} ${url}`, p);
  setTimeout(() => early.delete(`${method} ${url}`), 10_000);
}

/** The prefetched answer if there is one, else a fresh request. */
export function apiOnce<T>(method: string, url: string): Promise<T> {
  const key = `${method} ${url}`;
  const p = early.get(key);
  early.delete(key);
  return (p as Promise<T> | undefined) ?? api<T>(method, url);
}

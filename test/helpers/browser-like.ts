/**
 * A student as the browser is one, minus the browser: a cookie jar and a
 * same-origin `Origin` on every request (the lab API's request rules).
 */
export interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

export class CookieClient {
  cookie = '';
  constructor(readonly url: string) {}

  async call(method: string, path: string, body?: unknown): Promise<Answer> {
    const r = await fetch(`${this.url}${path}`, {
      method,
      headers: {
        origin: this.url,
        ...(this.cookie ? { cookie: this.cookie } : {}),
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const set = r.headers.get('set-cookie');
    if (set) this.cookie = set.split(';')[0] as string;
    return {
      status: r.status,
      body: (await r.json()) as Record<string, unknown>,
      headers: r.headers,
    };
  }

  /** The answer's body; throws on an error status. */
  async ok(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const a = await this.call(method, path, body);
    if (a.status >= 400)
      throw new Error(`${method} ${path}: ${a.status} ${JSON.stringify(a.body)}`);
    return a.body;
  }
}

/**
 * Structured logs: one JSON object per line on stderr (message + context),
 * so a supervisor (systemd, CI) can parse them. Quiet by default in the CLI;
 * the level comes from config (UNDERLAY_LOG).
 */
import { createHash } from 'node:crypto';

export type Level = 'debug' | 'info' | 'warn' | 'error';
export const LEVELS: readonly Level[] = ['debug', 'info', 'warn', 'error'];
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, ctx?: Record<string, unknown>): void;
  info(msg: string, ctx?: Record<string, unknown>): void;
  warn(msg: string, ctx?: Record<string, unknown>): void;
  error(msg: string, ctx?: Record<string, unknown>): void;
}

/**
 * Context keys whose values are credentials: a student's id is the value of
 * their cookie, and anyone holding it can type into their terminals. Logged
 * as a short hash instead, still enough to follow one student through a log.
 */
const CREDENTIALS = new Set(['owner', 'student', 'cookie', 'token']);

export function redact(ctx: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx)) {
    out[k] =
      CREDENTIALS.has(k) && typeof v === 'string' && v !== ''
        ? `sha256:${createHash('sha256').update(v).digest('hex').slice(0, 12)}`
        : v;
  }
  return out;
}

export function createLogger(
  level: Level = 'warn',
  sink: (line: string) => void = (l) => process.stderr.write(l + '\n'),
): Logger {
  const min = ORDER[level] ?? ORDER.warn;
  const emit = (lvl: Level, msg: string, ctx?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    sink(JSON.stringify({ t: new Date().toISOString(), level: lvl, msg, ...(ctx && redact(ctx)) }));
  };
  return {
    debug: (m, c) => emit('debug', m, c),
    info: (m, c) => emit('info', m, c),
    warn: (m, c) => emit('warn', m, c),
    error: (m, c) => emit('error', m, c),
  };
}

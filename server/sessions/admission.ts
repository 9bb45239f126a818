/**
 * Admission control: who may start a sandbox, and how often anyone may ask
 * for the expensive things (docs/operating.md#admission-control).
 *
 * - A global capacity of live sandboxes, derived from the host (memory,
 *   pids, uid ranges) unless configured. When it is reached, a start gets a
 *   place in a first-come line and a 503 saying where it stands; asking
 *   again keeps the place, and places free up in line order.
 * - Per-client caps (a client is a remote address): live sandboxes and new
 *   student identities. Per-student caps live in LabSessions (it knows labs).
 * - Token buckets per (kind, key) for starts, checks and hints.
 *
 * Pure bookkeeping: no timers, no I/O (hostCapacity reads /proc once at start).
 */
import * as fs from 'node:fs';
import { RequestError } from '../util/errors';

export type RateKind = 'start' | 'client-start' | 'check' | 'hint' | 'identity' | 'join';

export interface Rate {
  /** Requests allowed at once after a quiet period. */
  burst: number;
  /** Sustained rate the bucket refills at. */
  perMinute: number;
}

export interface AdmissionLimits {
  /** Live sandboxes on this server (bare and lab sessions together). */
  capacity: number;
  /** Live sandboxes started from one client address. */
  perClient: number;
  /** Live lab sandboxes of one student (the oldest idle one makes room). */
  perStudent: number;
  /** How many may wait in line when the host is full. */
  queueMax: number;
  rates: Record<RateKind, Rate>;
}

export const DEFAULT_RATES: Record<RateKind, Rate> = {
  // Creating a sandbox (start, reset): a student needs a handful per lab.
  start: { burst: 10, perMinute: 6 },
  // All starts from one address (ids are cheap: the per-student rate alone
  // let one address start 311 sandboxes in 20 s). serve sets it to
  // UNDERLAY_PER_CLIENT a minute, burst as large, unless configured.
  'client-start': { burst: 30, perMinute: 30 },
  // Checks run scripts in the sandbox; a student clicks Check a few times a minute.
  check: { burst: 20, perMinute: 30 },
  hint: { burst: 10, perMinute: 20 },
  // New anonymous students from one address: a classroom behind one NAT
  // arrives at once, so the burst is large and the refill slow.
  identity: { burst: 300, perMinute: 20 },
  // Joining a class with a code, per address: a class behind one NAT joins
  // at once; guessing among 2.8e11 codes at 60 a minute gets nowhere.
  join: { burst: 300, perMinute: 60 },
};

/** A waiter that stops asking for this long loses its place. */
export const QUEUE_STALE_MS = 30_000;
/** How often a waiting client is told to ask again. */
export const QUEUE_POLL_MS = 3_000;
/** A waiter that asked within this long counts as waiting (it may be overtaken after). */
export const QUEUE_ACTIVE_MS = 3 * QUEUE_POLL_MS;

export interface HostFacts {
  memTotalBytes: number;
  pidMax: number;
  /** uid ranges this server may hand out (Config.maxSessions). */
  idRanges: number;
}

export function readHostFacts(idRanges: number): HostFacts {
  const mem = /^MemTotal:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());
  return { memTotalBytes: Number(mem?.[1] ?? 0) * 1024, pidMax, idRanges };
}

/**
 * What all sandboxes together may use: the host minus a reserve for the
 * host itself. Set as hard limits on the parent cgroup of every sandbox, so
 * admitting more sandboxes than could all reach their own limits at once
 * (the overcommit below) can starve sandboxes of each other, never the host.
 */
export function aggregateBudget(h: HostFacts): { memoryBytes: number; pids: number } {
  const memReserve = Math.max(1024 ** 3, h.memTotalBytes * 0.1);
  const pidReserve = Math.max(2048, Math.floor(h.pidMax * 0.1));
  return {
    memoryBytes: Math.max(256 * 1024 ** 2, Math.floor(h.memTotalBytes - memReserve)),
    pids: Math.max(1024, h.pidMax - pidReserve),
  };
}

/**
 * Sandboxes rarely use their limits (a lab shell uses ~10 MB and ~10 pids
 * of its 512 MiB and 128), so capacity assumes a sandbox uses an eighth of
 * each on average; the aggregate cgroup limit is what makes that safe.
 */
export const OVERCOMMIT = 8;

export function hostCapacity(h: HostFacts, perSandbox: { memoryBytes: number; pids: number }) {
  const budget = aggregateBudget(h);
  const byMemory = Math.floor((budget.memoryBytes * OVERCOMMIT) / perSandbox.memoryBytes);
  const byPids = Math.floor((budget.pids * OVERCOMMIT) / perSandbox.pids);
  const capacity = Math.max(1, Math.min(byMemory, byPids, h.idRanges));
  return { capacity, byMemory, byPids, byIdRanges: h.idRanges };
}

class Bucket {
  constructor(
    public tokens: number,
    public at: number,
  ) {}
}

/** One place taken by a live (or starting) sandbox; release it exactly once. */
/** The place of a sandbox restored after a restart: no address is known for it. */
export const RESTORED_CLIENT = 'restored';

export interface Slot {
  readonly client: string;
  release(): void;
}

interface Waiter {
  key: string;
  client: string;
  seen: number;
}

const ordinal = (n: number) =>
  `${n}${n % 10 === 1 && n % 100 !== 11 ? 'st' : n % 10 === 2 && n % 100 !== 12 ? 'nd' : n % 10 === 3 && n % 100 !== 13 ? 'rd' : 'th'}`;

export class Admission {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perClient = new Map<string, number>();
  private live = 0;
  private line: Waiter[] = [];

  constructor(
    readonly limits: AdmissionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Live (and starting) sandboxes. */
  get used(): number {
    return this.live;
  }

  get waiting(): number {
    this.prune();
    return this.line.length;
  }

  /** Takes one token of `kind` for `key`, or throws 429 with when to retry. */
  take(kind: RateKind, key: string): void {
    const rate = this.limits.rates[kind];
    const now = this.now();
    const k = `${kind}\0${key}`;
    const b = this.buckets.get(k) ?? new Bucket(rate.burst, now);
    b.tokens = Math.min(rate.burst, b.tokens + ((now - b.at) * rate.perMinute) / 60_000);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      this.buckets.set(k, b);
      this.sweepBuckets(now);
      return;
    }
    this.buckets.set(k, b);
    const retryAfterMs = Math.ceil(((1 - b.tokens) * 60_000) / rate.perMinute);
    throw new RequestError('rate-limited', RATE_MESSAGES[kind], {
      hint: `Try again in ${Math.ceil(retryAfterMs / 1000)} s.`,
      retryAfterMs,
    });
  }

  /**
   * A place for a new sandbox started by `client` on behalf of `key` (the
   * student, or the client for bare sessions). Throws 429 over the client's
   * cap, or 503 with the caller's place in line when the host is full.
   */
  admit(client: string, key: string): Slot {
    this.checkClient(client);
    this.prune();
    const now = this.now();
    let i = this.line.findIndex((w) => w.key === key);
    const free = this.limits.capacity - this.live;
    // Waiters ahead of this caller get the free places first - those still
    // asking: one that went quiet (a closed tab) keeps its place for a while
    // but does not hold up the line behind it.
    const ahead = (i === -1 ? this.line : this.line.slice(0, i)).filter(
      (w) => now - w.seen <= QUEUE_ACTIVE_MS,
    ).length;
    if (free > 0 && ahead < free) {
      if (i !== -1) this.line.splice(i, 1);
      return this.take1(client);
    }
    if (i === -1) {
      if (this.line.length >= this.limits.queueMax)
        throw new RequestError('full', 'The lab host is full, and so is the line to get in.', {
          hint: 'Try again in a minute.',
          retryAfterMs: 60_000,
        });
      // One address holds at most as many places in line as it may run sandboxes.
      if (this.line.filter((w) => w.client === client).length >= this.limits.perClient)
        throw new RequestError(
          'rate-limited',
          `The lab host is full, and ${this.limits.perClient} places in line are already taken from your address.`,
          { hint: 'Try again in a minute.', retryAfterMs: 60_000 },
        );
      this.line.push({ key, client, seen: now });
      i = this.line.length - 1;
    } else (this.line[i] as Waiter).seen = now;
    const position = i + 1;
    throw new RequestError('full', `The lab host is full: you are ${ordinal(position)} in line.`, {
      hint: 'Your lab starts as soon as a place frees up; keep this page open.',
      retryAfterMs: QUEUE_POLL_MS,
      queuePosition: position,
    });
  }

  /**
   * Whether `key` waits in line with nobody still asking ahead of it: a
   * place freed now would be its own (admit's rule).
   */
  firstInLine(key: string): boolean {
    const now = this.now();
    const i = this.line.findIndex((w) => w.key === key);
    return i !== -1 && !this.line.slice(0, i).some((w) => now - w.seen <= QUEUE_ACTIVE_MS);
  }

  /**
   * A live sandbox changes hands (a warm seat taken by a student of
   * `client`): the host holds no more sandboxes than before, so capacity and
   * the line do not apply, the client's cap does. `old` is released only if
   * the new place is granted; `key` (the taker) leaves the line if it was in it.
   */
  handOver(old: Slot, client: string, key: string): Slot {
    this.checkClient(client);
    const slot = this.take1(client);
    old.release();
    this.line = this.line.filter((w) => w.key !== key);
    return slot;
  }

  /** Throws 429 if `client` runs as many sandboxes as it may. */
  checkClient(client: string): void {
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.limits.perClient) throw this.overClientCap(mine);
  }

  private overClientCap(mine: number): RequestError {
    return new RequestError(
      'rate-limited',
      `${mine} sandboxes are already running from your address (at most ${this.limits.perClient})`,
      {
        hint: 'End a lab you no longer use. A classroom behind one address needs a higher UNDERLAY_PER_CLIENT on the server.',
        retryAfterMs: QUEUE_POLL_MS * 10,
      },
    );
  }

  /** Counts a sandbox that exists already (re-adopted after a restart), even over capacity. */
  adopt(client = RESTORED_CLIENT): Slot {
    return this.take1(client);
  }

  private take1(client: string): Slot {
    this.live++;
    this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    let released = false;
    return {
      client,
      release: () => {
        if (released) return;
        released = true;
        this.live--;
        const n = (this.perClient.get(client) ?? 1) - 1;
        if (n <= 0) this.perClient.delete(client);
        else this.perClient.set(client, n);
      },
    };
  }

  private prune(): void {
    const cutoff = this.now() - QUEUE_STALE_MS;
    if (this.line.some((w) => w.seen < cutoff))
      this.line = this.line.filter((w) => w.seen >= cutoff);
  }

  /** Full buckets carry no information: drop them now and then so the map stays small. */
  private sweepBuckets(now: number): void {
    if (this.buckets.size < 10_000) return;
    for (const [k, b] of this.buckets) {
      const kind = k.slice(0, k.indexOf('\0')) as RateKind;
      const rate = this.limits.rates[kind];
      if (b.tokens + ((now - b.at) * rate.perMinute) / 60_000 >= rate.burst) this.buckets.delete(k);
    }
  }
}

const RATE_MESSAGES: Record<RateKind, string> = {
  start: 'Too many sandbox starts in a short time.',
  'client-start': 'Too many sandbox starts from your address in a short time.',
  check: 'Too many checks in a short time.',
  hint: 'Too many hint requests in a short time.',
  identity: 'Too many new students from your address in a short time.',
  join: 'Too many attempts to join a class from your address in a short time.',
};

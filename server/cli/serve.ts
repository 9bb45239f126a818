/**
 * `underlay serve`: one port - the web app (Next.js, in a process of its own:
 * web-process.ts), the REST API and socket.io. This is the composition root:
 * it builds every service (store, sandboxes, sessions, labs) and hands them to
 * transport/. On start it re-adopts or reaps what a previous run left.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as path from 'node:path';
import {
  Classroom,
  classWants,
  cohortState,
  drawCode,
  warmHeld,
  warmTotals,
} from '../classroom/cohorts';
import { cohortsFileOf, loadCohortsFile, syncCohorts } from '../classroom/cohorts-file';
import { formatProblem } from '../util/yaml-file';
import { DEFAULT_LIMITS, loadConfig } from '../config';
import { LabCatalog } from '../labs/catalog';
import { LabEngine } from '../labs/engine';
import { LabSessions } from '../labs/lab-sessions';
import type { WarmPool } from '../labs/warm-pool';
import { detectCgroupMode, SandboxManager } from '../sandbox/index';
import {
  Admission,
  aggregateBudget,
  DEFAULT_RATES,
  hostCapacity,
  readHostFacts,
} from '../sessions/admission';
import { SessionManager } from '../sessions/session-manager';
import { Store } from '../store/store';
import { createApp } from '../transport/http';
import { StudentIds } from '../transport/identity';
import { createLogger, type Logger } from '../util/logger';
import { WebProcess } from './web-process';

export interface ServeOptions {
  port: number;
  host: string;
  dev: boolean;
  /** A folder of labs (or one lab's folder) to serve instead of UNDERLAY_LABS_DIR. */
  labs?: string;
  /** Warm seats per lab (--warm lab=N), over UNDERLAY_WARM's. */
  warm?: Map<string, number>;
}

/**
 * All open connections together: half the open-file limit left after a
 * reserve, since sandboxes and terminals need descriptors too.
 */
function maxConnections(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  const soft = m?.[1] === 'unlimited' ? 1 << 20 : Number(m?.[1] ?? 1024);
  return Math.max(64, Math.min(16_384, Math.floor((soft - 1024) / 2)));
}

export const WEB_DIR = path.resolve(__dirname, '..', '..', '..', 'web');

export async function serve(opts: ServeOptions): Promise<void> {
  const config = loadConfig();
  if (opts.labs) config.labsDir = path.resolve(opts.labs);
  for (const [lab, n] of opts.warm ?? []) config.warm.set(lab, n);
  const log = createLogger(config.logLevel ?? 'info');
  const store = new Store(config.stateDir);
  // A helper and a session disk wait ahead for each next create (ManagerOptions).
  const sandboxes = new SandboxManager({
    config,
    store,
    logger: log,
    warmHelper: true,
    spareDisk: true,
  });
  // Admission: the capacity assumes sandboxes rarely reach their limits; the
  // aggregate cgroup limit makes that assumption safe for the host.
  const facts = readHostFacts(config.maxSessions);
  const budget = aggregateBudget(facts);
  sandboxes.limitAll(budget);
  const derived = hostCapacity(facts, DEFAULT_LIMITS);
  const admission = new Admission({
    capacity: config.admission.capacity ?? derived.capacity,
    perClient: config.admission.perClient,
    perStudent: config.admission.perStudent,
    queueMax: 1000,
    rates: {
      ...DEFAULT_RATES,
      'client-start': {
        burst: config.admission.perClient,
        perMinute: config.admission.perClient,
      },
      ...config.admission.rates,
    },
  });
  log.info('admission', {
    capacity: admission.limits.capacity,
    derived,
    budget,
    perClient: admission.limits.perClient,
    perStudent: admission.limits.perStudent,
  });
  const { adopted, reaped, quarantined } = await sandboxes.adoptOrReap();
  log.info('sandboxes from a previous run', { adopted, reaped, quarantined });
  // Housekeeping: quarantined teardowns are retried (a stuck one never stops
  // serving), and zombies re-parented to us are reaped if a path missed one.
  // Parked sessions' disks: dropped when unused for keepParkedMs, or oldest
  // first past the per-student or total budget (docs/operating.md#parked-sessions).
  const st = fs.statfsSync(config.stateDir);
  const diskPolicy = {
    maxIdleMs: config.disks.keepParkedMs,
    perOwnerBytes: config.disks.perStudentBytes,
    totalBytes: config.disks.totalBytes ?? Math.floor((st.blocks * st.bsize) / 2),
  };
  log.info('kept disks', { ...diskPolicy, parkAfterMs: config.disks.parkAfterMs });
  // Housekeeping reads the host a slice at a time (hundreds of disks and
  // children in a class) and awaits teardown retries, so a tick may run past
  // the next: one still under way skips it.
  let housekeepingBusy = false;
  // Made once the previous run's sandboxes are restored (below).
  const seats: { warm?: WarmPool } = {};
  const housekeep = async () => {
    if (housekeepingBusy) return;
    housekeepingBusy = true;
    const step = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err) {
        log.error(what, { error: String(err) });
      }
    };
    try {
      await step('collecting parked disks', () => sandboxes.collectDisks(diskPolicy));
      await step('collecting zombies', () => sandboxes.collectZombies());
      await step('retry of quarantined sandboxes', () => sandboxes.retryQuarantined());
      await step('warm seats', async () => {
        seats.warm?.sweep();
        seats.warm?.fill();
      });
    } finally {
      housekeepingBusy = false;
    }
  };
  // Once before serving: a restart after a long pause frees old disks first.
  try {
    await sandboxes.collectDisks(diskPolicy);
  } catch (err) {
    log.error('collecting parked disks', { error: String(err) });
  }
  const housekeeping = setInterval(() => void housekeep(), 30_000);
  housekeeping.unref();

  // --dev reloads labs; the web app's own dev mode (next dev) is separate.
  if (!config.nextDev && !fs.existsSync(path.join(WEB_DIR, '.next', 'BUILD_ID'))) {
    throw new Error('the web app is not built: run `npm run build` (or scripts/up)');
  }
  // Started first, while this process is small (a fork copies its page tables).
  const runDir = path.join(config.stateDir, 'run');
  fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(runDir, 0o700);
  const web = new WebProcess({
    dir: WEB_DIR,
    runDir,
    dev: config.nextDev,
    host: opts.host,
    port: opts.port,
    log,
  });
  await web.start();

  const mode = detectCgroupMode();
  const catalog = new LabCatalog(config.labsDir, mode, log);
  if (opts.dev) catalog.watch();
  const engine = new LabEngine(store, () => catalog.labs, mode);
  applyCohortsFile(config.labsDir, [...catalog.labs.keys()], store, log);
  const sessions = new SessionManager(sandboxes, log, {
    parkMs: config.disks.parkAfterMs,
    // A lab session's row goes with its sandbox; progress stays.
    onEnded: (s) => {
      if (s.lab) store.deleteLabSession(s.id);
    },
  });
  const labSessions = new LabSessions(sessions, sandboxes, store, catalog, log, admission);
  const classroom = new Classroom(store);
  const signingSince = Number(store.meta('student-signing-since', () => String(Date.now())));
  const students = new StudentIds(
    store.meta('student-secret', () => crypto.randomBytes(32).toString('hex')),
    {
      admission,
      // Unsigned ids from before this server signed them stay theirs; an id
      // first seen since then is a student only with its signature (else the
      // bare id, or the prefix of a resume key, was a credential).
      known: (id) => store.hasStudentBefore(id, signingSince),
    },
  );
  const app = createApp({
    sessions,
    log,
    web: (req, res) => {
      // An unknown lab gets a real 404 (status and page), not a 200 that says "not found".
      const m = /^\/labs\/([^/?#]+)\/?(?:[?#]|$)/.exec(req.url ?? '');
      web.handle(req, res, !!m && !catalog.labs.has(decodeURIComponent(m[1] as string)));
    },
    labs: { catalog, engine, sessions: labSessions },
    classroom,
    allowedOrigins: config.allowedOrigins,
    allowedHosts: config.allowedHosts,
    admission,
    warm: () => seats.warm?.status() ?? {},
    students,
    bareSessions: config.bareSessions,
    classesOnly: config.classesOnly,
    connections: { perClient: config.admission.connectionsPerClient, total: maxConnections() },
  });
  const beyondLoopback =
    opts.host !== '127.0.0.1' && opts.host !== 'localhost' && opts.host !== '::1';
  // Open mode (anonymous students, every lab) suits a laptop; on a network
  // address without any open class, say so where the operator looks.
  const openCohorts = store.listCohorts().filter((c) => cohortState(c) === 'open');
  if (beyondLoopback && openCohorts.length === 0 && !config.classesOnly)
    log.warn(
      'listening beyond this machine with no open class: anyone who reaches this address can start sandboxes as an anonymous student. For a class, make one: underlay cohort create NAME --labs LAB,... (docs/classroom.md)',
      { host: opts.host, port: opts.port },
    );
  else if (beyondLoopback && !config.classesOnly)
    log.info(
      'open mode: a student who has not joined a class can still start any lab; UNDERLAY_CLASSES_ONLY=1 keeps the labs for the classes (docs/classroom.md)',
      { classes: openCohorts.map((c) => c.name) },
    );
  if (beyondLoopback)
    log.info(
      "listening beyond this machine: name the host students use in UNDERLAY_ALLOWED_HOSTS unless it is an IP address or this machine's name",
      {
        allowedHosts: config.allowedHosts,
      },
    );
  // Students' sandboxes from before a restart come back as their sessions; the rest is destroyed.
  await labSessions.restore(adopted);
  // Seats started ahead for a class (docs/operating.md#warm-seats); with none
  // wanted, this still drops the disks of seats a previous run left.
  // Wanted: serve --warm's, or the classes' on now (cohorts.yaml `warm`)
  // when more; a class's are held for its own students (WarmPool's `held`:
  // what the student's classes and the others still want). Asked
  // many times in one fill, so read from the store once per turn of the
  // event loop: a take (which re-owns the seat's disk to the student) is
  // seen by the fill it schedules. A store that fails keeps the last figures.
  let warmNow: ReadonlyMap<string, number> = config.warm;
  let heldNow: ReturnType<typeof warmHeld> = new Map();
  let warmFresh = false;
  const readWarm = () => {
    if (warmFresh) return;
    warmFresh = true;
    setImmediate(() => (warmFresh = false));
    try {
      const held = warmHeld(store.listCohorts(), Date.now(), (c, lab) => classroom.haveLab(c, lab));
      const merged = new Map(config.warm);
      for (const [lab, n] of warmTotals(held)) merged.set(lab, Math.max(n, merged.get(lab) ?? 0));
      if (JSON.stringify([...merged]) !== JSON.stringify([...warmNow]))
        log.info('warm seats wanted', { wanted: Object.fromEntries(merged) });
      warmNow = merged;
      heldNow = held;
    } catch (err) {
      log.error('reading the classes for warm seats', { error: String(err) });
    }
  };
  seats.warm = labSessions.warmUp(
    () => {
      readWarm();
      return warmNow;
    },
    (lab, owner, startingOver) => {
      readWarm();
      return classWants(heldNow, lab, (c) => store.isMember(c, owner), startingOver);
    },
  );
  if (config.warm.size) log.info('warm seats', { wanted: Object.fromEntries(config.warm) });
  // next dev's hot reload (a websocket) goes to the web process; socket.io has its own path.
  if (config.nextDev)
    app.server.on('upgrade', (req, socket, head) => {
      if (req.url?.startsWith('/_next/')) web.upgrade(req, socket as net.Socket, head as Buffer);
    });
  await new Promise<void>((resolve) => app.server.listen(opts.port, opts.host, resolve));
  log.info('listening', {
    url: `http://${opts.host === '0.0.0.0' ? 'localhost' : opts.host}:${opts.port}/`,
    dev: opts.dev,
  });
  // Stopping keeps students' sandboxes for the next start to re-adopt
  // (UNDERLAY_END_ON_STOP=1 ends them instead).
  // One stop at a time: a second signal while the first ends sessions (a
  // supervisor and a timeout both sending SIGTERM) exited mid-teardown,
  // leaving sandboxes for the next start to reap.
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    clearInterval(housekeeping);
    seats.warm?.close();
    await sandboxes.dropAhead();
    catalog.close();
    web.stop();
    if (config.endOnStop) {
      log.info('stopping: ending sessions');
      await app.close();
      // The untaken seats ended with them: their disks are nobody's files.
      try {
        seats.warm?.sweep();
      } catch (err) {
        log.warn("dropping the warm seats' disks", { error: String(err) });
      }
    } else {
      log.info('stopping: sandboxes are kept for the next start');
      await app.shutdown();
    }
    store.close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

/**
 * The labs folder's cohorts.yaml, applied at start (docs/classroom.md#cohorts-in-a-file).
 * A file with problems is not applied at all, and says why; the server starts anyway.
 */
function applyCohortsFile(labsDir: string, labs: string[], store: Store, log: Logger): void {
  const file = cohortsFileOf(labsDir);
  if (!file) return;
  const { cohorts, problems } = loadCohortsFile(file, file, labs);
  if (!cohorts) {
    for (const p of problems) log.error('cohorts file problem', { problem: formatProblem(p) });
    log.error('cohorts file not applied', { file, problems: problems.length });
    return;
  }
  try {
    const r = syncCohorts(store, cohorts, drawCode);
    log.info('cohorts file applied', { file, ...r });
  } catch (err) {
    log.error('cohorts file not applied', { file, error: (err as Error).message });
  }
}

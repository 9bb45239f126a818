import Database from 'better-sqlite3';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Every id range is held by a sandbox or a kept disk. */
export class RangesExhausted extends Error {
  constructor(maxK: number) {
    super(`all ${maxK} sandbox id ranges are in use; end or reap sessions first`);
    this.name = 'RangesExhausted';
  }
}

/** What the store remembers about a live sandbox, enough to re-adopt or reap it. */
export interface SandboxRecord {
  id: string;
  /** Index of the uid/gid range: host ids 100000 + 65536*k ... */
  k: number;
  uidBase: number;
  state: 'creating' | 'ready' | 'destroying';
  /** Host pid of the sandbox init and its start time (clock ticks), to survive pid reuse. */
  initPid: number | null;
  initStart: number | null;
  usernsIno: number | null;
  /** Who owns it: a CLI run, the server, or nobody (detached, `run --keep`); pid and start time. */
  ownerPid: number;
  ownerStart: number;
  ownerKind: 'cli' | 'server' | 'detached';
  hostname: string;
  /** Host-side resources, so teardown can find them even after a crash. */
  resources: SandboxResources;
  createdAt: number;
  /**
   * Teardowns that failed so far (the record is quarantined in 'destroying'
   * and retried), and the last error: one stuck sandbox never blocks
   * start-up or the reaping of the others.
   */
  failures?: number;
  lastError?: string;
}

export interface SandboxResources {
  sessionDir: string;
  /** Mount points in the host namespace, innermost last: unmounted in reverse. */
  mounts: string[];
  /** The session disk's image (sandbox/disk.ts), removed after the unmount unless kept. */
  disk?: string;
  /**
   * The session disk's I/O limits on its loop device (sandbox/cgroups.ts
   * setDiskRules), recorded before they are set: lifted before the unmount,
   * set again when a restarted server adopts the sandbox.
   */
  diskIo?: { dev: string; bps: number; iops: number; dirtyBytes: number };
  /** The disk is kept for its owner after this sandbox (a lab session's files): its id. */
  keptDisk?: string;
  /** The disk held files from an earlier sandbox (so the lab's setup is not run again). */
  restored?: boolean;
  cgroupMode: 'v1' | 'v2';
  /** Session cgroup dirs (one per v1 hierarchy, one on v2). */
  cgroupDirs: string[];
  /** cgroup.procs files a joining process writes itself into. */
  joinProcs: string[];
  /**
   * The trusted view checks and hints run in (docs/sandbox.md#trusted-checks):
   * the pristine image's tools over the student's, fresh /proc and cgroup
   * mounts. Absent in records made before it existed.
   */
  checkView?: CheckView;
}

/**
 * A session disk kept across sandboxes (a lab session's files): whose it is
 * (owner, and a name such as the lab), its image id, the id range its files
 * are owned by (reserved while it exists), its size, and when it was made
 * and last used.
 */
export interface DiskRow {
  owner: string;
  name: string;
  id: string;
  k: number;
  bytes: number;
  created: number;
  used: number;
  /** 1 once the owner's setup completed on it (sandbox/manager.ts markDiskReady). */
  ready: number;
}

/**
 * A class (docs/classroom.md): which labs, when it is open, how many seats,
 * its join code (normalized: upper case, no dash) and the sha256 of its
 * instructor token (the token itself is shown once, never stored).
 */
export interface CohortRow {
  name: string;
  code: string;
  tokenHash: string;
  labs: string[];
  /** Epoch ms; absent: no bound. */
  starts?: number;
  ends?: number;
  /** Absent: no limit. */
  seats?: number;
  /** Warm seats of the class per lab id (cohorts.yaml `warm`), wanted from WARM_LEAD_MS before it starts until it ends. */
  warm?: Record<string, number>;
  closed: boolean;
  created: number;
  /** 'file': declared in the labs folder's cohorts.yaml (the file wins); absent: made with the CLI. */
  source?: 'file';
}

export interface MemberRow {
  cohort: string;
  student: string;
  display: string;
  joined: number;
}

/** Persisted form of a join view (native/index.ts JoinView, which the sandbox layer passes it as). */
export interface CheckView {
  trees: { hostDir: string; target: string }[];
  binds: string[];
  actions: (
    | { mkdir: string }
    | { mount: { fstype: string; source: string; target: string; data: string } }
    | { symlink: { target: string; path: string } }
  )[];
}

interface Row {
  id: string;
  k: number;
  body: string;
}

/**
 * The embedded SQLite store (better-sqlite3, WAL). Small and synchronous:
 * every write is a short transaction, which is what makes allocation of id
 * ranges safe between a server and concurrent CLI runs.
 */
export class Store {
  private readonly db: Database.Database;

  private used: { version: number; ks: Set<number> } | undefined;

  constructor(stateDir: string) {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o711 });
    this.db = new Database(path.join(stateDir, 'underlay.db'), { timeout: 5000 });
    // Holds the token secret and student progress: root only.
    fs.chmodSync(path.join(stateDir, 'underlay.db'), 0o600);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS sandboxes (
        id   TEXT PRIMARY KEY,
        k    INTEGER NOT NULL UNIQUE,
        body TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS progress (
        owner TEXT NOT NULL,
        lab   TEXT NOT NULL,
        body  TEXT NOT NULL,
        updated INTEGER NOT NULL,
        PRIMARY KEY (owner, lab)
      );
      CREATE TABLE IF NOT EXISTS lab_sessions (
        owner   TEXT NOT NULL,
        lab     TEXT NOT NULL,
        session TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (owner, lab)
      );
      CREATE TABLE IF NOT EXISTS disks (
        owner TEXT NOT NULL,
        name  TEXT NOT NULL,
        id    TEXT NOT NULL UNIQUE,
        k     INTEGER NOT NULL UNIQUE,
        bytes INTEGER NOT NULL,
        created INTEGER NOT NULL,
        used  INTEGER NOT NULL,
        ready INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (owner, name)
      );
      CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS cohorts (
        name TEXT PRIMARY KEY,
        code TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS cohort_members (
        cohort  TEXT NOT NULL,
        student TEXT NOT NULL,
        display TEXT NOT NULL,
        joined  INTEGER NOT NULL,
        PRIMARY KEY (cohort, student)
      );
      CREATE TABLE IF NOT EXISTS cohort_notices (
        cohort TEXT NOT NULL,
        text   TEXT NOT NULL,
        at     INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS events (
        id    INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        lab   TEXT NOT NULL,
        step  TEXT NOT NULL,
        kind  TEXT NOT NULL,
        detail TEXT NOT NULL,
        at    INTEGER NOT NULL
      );
      -- A student's events in a lab are read per (owner, lab): the dashboard does it for a
      -- whole class every 2 s, and without this each read scanned the table (1.6 s per
      -- dashboard request for 200 students, test/bench/instructor.bench.ts).
      CREATE INDEX IF NOT EXISTS events_owner_lab ON events (owner, lab, id);
    `);
    // Stores from before updateCohort kept the code column: a code changed in
    // cohorts.yaml was shown but never joined (the old one still was). Never
    // stops a start: what cannot be mended stays as it was.
    try {
      this.mendCohortCodes();
    } catch {
      // e.g. a read-only or full disk: the next open tries again.
    }
  }

  /**
   * Gives each cohort's code column the code its row says. A code another
   * cohort holds (UNIQUE) is not taken: that cohort keeps joining by its old
   * code, and its row says so (sync refuses the clash). Rows are tried again
   * while any got through, so a chain of changed codes resolves in any order.
   */
  private mendCohortCodes(): void {
    for (let pass = 0; pass < 10; pass++) {
      const stale = this.db
        .prepare(
          `SELECT name, json_extract(body, '$.code') AS code FROM cohorts
             WHERE json_valid(body) AND code != json_extract(body, '$.code')`,
        )
        .all() as { name: string; code: string }[];
      let mended = 0;
      const clashed: string[] = [];
      for (const c of stale)
        try {
          this.db.prepare('UPDATE cohorts SET code = ? WHERE name = ?').run(c.code, c.name);
          mended++;
        } catch (err) {
          if ((err as { code?: string }).code !== 'SQLITE_CONSTRAINT_UNIQUE') throw err;
          clashed.push(c.name);
        }
      if (mended > 0 && clashed.length > 0) continue;
      for (const name of clashed) {
        const row = this.getCohort(name);
        const old = this.db.prepare('SELECT code FROM cohorts WHERE name = ?').get(name) as
          | { code: string }
          | undefined;
        if (row && old)
          this.db
            .prepare('UPDATE cohorts SET body = ? WHERE name = ?')
            .run(JSON.stringify({ ...row, code: old.code }), name);
      }
      return;
    }
  }

  /**
   * Reserves an id range and records the sandbox as 'creating'. Without a
   * disk key: the lowest range no sandbox and no kept disk holds. With one:
   * the range of that key's kept disk (its files are owned by it), or, for a
   * new key, the lowest free range, recorded with the new disk in the same
   * transaction. A kept disk some sandbox already uses is refused.
   */
  reserve(
    make: (k: number, disk: (DiskRow & { fresh: boolean }) | undefined) => SandboxRecord,
    maxK: number,
    disk?: { owner: string; name: string; bytes: number; id: string },
  ): { record: SandboxRecord; disk: (DiskRow & { fresh: boolean }) | undefined } {
    const tx = this.db.transaction(() => {
      let kept: (DiskRow & { fresh: boolean }) | undefined;
      if (disk) {
        const row = this.getDisk(disk.owner, disk.name);
        if (row && this.db.prepare('SELECT 1 FROM sandboxes WHERE k = ?').get(row.k))
          throw new Error(`the disk ${row.id} is in use by another sandbox`);
        if (row) kept = { ...row, fresh: false };
      }
      let k = kept?.k ?? 0;
      if (!kept) {
        const used = this.usedKs();
        while (used.has(k)) k++;
        if (k >= maxK) throw new RangesExhausted(maxK);
        if (disk) {
          const now = Date.now();
          kept = { ...disk, k, created: now, used: now, ready: 0, fresh: true };
          this.db
            .prepare(
              'INSERT INTO disks (owner, name, id, k, bytes, created, used) VALUES (?, ?, ?, ?, ?, ?, ?)',
            )
            .run(disk.owner, disk.name, disk.id, k, disk.bytes, now, now);
        }
      }
      const rec = make(k, kept);
      this.db
        .prepare('INSERT INTO sandboxes (id, k, body) VALUES (?, ?, ?)')
        .run(rec.id, rec.k, JSON.stringify(rec));
      return { record: rec, disk: kept };
    });
    try {
      const r = tx.immediate();
      this.used?.ks.add(r.record.k);
      return r;
    } catch (err) {
      this.used = undefined; // a rolled-back insert may be in it
      throw err;
    }
  }

  /**
   * Every k a sandbox or a kept disk holds. Cached: a class's server keeps
   * hundreds of parked disks, and reading all their ks for each create cost
   * it ~0.6 ms at 800 (docs/benchmarks.md). This connection's own writes
   * update the cache; `data_version` changes when another connection (the
   * CLI, another process) commits, and then it is read again. Called inside
   * the write transaction, so nobody else commits meanwhile.
   */
  private usedKs(): Set<number> {
    const version = this.db.pragma('data_version', { simple: true }) as number;
    if (this.used?.version !== version) {
      const ks = this.db.prepare('SELECT k FROM sandboxes UNION ALL SELECT k FROM disks').pluck();
      this.used = { version, ks: new Set(ks.all() as number[]) };
    }
    return this.used.ks;
  }

  /** Frees k in the cache of usedKs() once neither table holds it. */
  private releaseK(k: number | undefined): void {
    if (k === undefined || !this.used) return;
    const held =
      this.db.prepare('SELECT 1 FROM sandboxes WHERE k = ?').get(k) ??
      this.db.prepare('SELECT 1 FROM disks WHERE k = ?').get(k);
    if (!held) this.used.ks.delete(k);
  }

  /** A kept session disk (sandbox/disk.ts), by who it belongs to. */
  getDisk(owner: string, name: string): DiskRow | undefined {
    return this.db
      .prepare(
        'SELECT owner, name, id, k, bytes, created, used, ready FROM disks WHERE owner = ? AND name = ?',
      )
      .get(owner, name) as DiskRow | undefined;
  }

  /** One owner's disks (the primary key's index: cheap however many disks the host keeps). */
  listDisksOf(owner: string): DiskRow[] {
    return this.db
      .prepare('SELECT owner, name, id, k, bytes, created, used, ready FROM disks WHERE owner = ?')
      .all(owner) as DiskRow[];
  }

  /**
   * Up to `limit` disks after `afterRowid`, in rowid order (each with it):
   * a term's thousands of disks read a page per turn of the event loop (a
   * read of 2,600 in one go held it 5-20 ms).
   */
  listDisksPage(afterRowid: number, limit: number): (DiskRow & { rowid: number })[] {
    return this.db
      .prepare(
        'SELECT rowid, owner, name, id, k, bytes, created, used, ready FROM disks WHERE rowid > ? ORDER BY rowid LIMIT ?',
      )
      .all(afterRowid, limit) as (DiskRow & { rowid: number })[];
  }

  listDisks(): DiskRow[] {
    return this.db
      .prepare('SELECT owner, name, id, k, bytes, created, used, ready FROM disks ORDER BY used')
      .all() as DiskRow[];
  }

  /** The disk holds a complete start (its owner's setup ran): a later sandbox restores it. */
  markDiskReady(id: string): void {
    this.db.prepare('UPDATE disks SET ready = 1 WHERE id = ?').run(id);
  }

  /** A sandbox stopped using the disk now (parking and collection go by this). */
  touchDisk(id: string): void {
    this.db.prepare('UPDATE disks SET used = ? WHERE id = ?').run(Date.now(), id);
  }

  /**
   * Gives a kept disk to another owner and name (a warm seat's disk, taken
   * by a student). Throws if that owner already has a disk of that name.
   */
  reownDisk(id: string, owner: string, name: string): void {
    const r = this.db
      .prepare('UPDATE disks SET owner = ?, name = ?, used = ? WHERE id = ?')
      .run(owner, name, Date.now(), id);
    if (r.changes !== 1) throw new Error(`no kept disk ${id}`);
  }

  /** Forgets a disk (its image is already gone); its id range is free again. */
  removeDisk(id: string): void {
    const row = this.db.prepare('DELETE FROM disks WHERE id = ? RETURNING k').get(id) as
      | { k: number }
      | undefined;
    this.releaseK(row?.k);
  }

  update(rec: SandboxRecord): void {
    this.db.prepare('UPDATE sandboxes SET body = ? WHERE id = ?').run(JSON.stringify(rec), rec.id);
  }

  get(id: string): SandboxRecord | undefined {
    const row = this.db.prepare('SELECT id, k, body FROM sandboxes WHERE id = ?').get(id) as
      | Row
      | undefined;
    return row ? (JSON.parse(row.body) as SandboxRecord) : undefined;
  }

  list(): SandboxRecord[] {
    const rows = this.db.prepare('SELECT id, k, body FROM sandboxes ORDER BY k').all() as Row[];
    return rows.map((r) => JSON.parse(r.body) as SandboxRecord);
  }

  /**
   * Each sandbox's id and id-range index, no record parsed: what the disk
   * bookkeeping needs, read every 30 s (list() parses every record, ~8 ms at
   * a class's 100 on a slow host).
   */
  listKeys(): { id: string; k: number }[] {
    return this.db.prepare('SELECT id, k FROM sandboxes ORDER BY k').all() as {
      id: string;
      k: number;
    }[];
  }

  /** Every sandbox's session disk image (resources.disk), no record parsed: each create reads them. */
  listDiskFiles(): string[] {
    const rows = this.db
      .prepare(
        `SELECT json_extract(body, '$.resources.disk') AS disk FROM sandboxes
           WHERE disk IS NOT NULL ORDER BY k`,
      )
      .all() as { disk: string }[];
    return rows.map((r) => r.disk);
  }

  /** Records whose teardown failed and that are being destroyed (quarantined). */
  listQuarantined(): SandboxRecord[] {
    const rows = this.db
      .prepare(
        `SELECT body FROM sandboxes WHERE json_extract(body, '$.state') = 'destroying'
           AND COALESCE(json_extract(body, '$.failures'), 0) != 0 ORDER BY k`,
      )
      .all() as { body: string }[];
    return rows.map((r) => JSON.parse(r.body) as SandboxRecord);
  }

  /** Releases the range; only called once nothing of the sandbox remains. */
  remove(id: string): void {
    const row = this.db.prepare('DELETE FROM sandboxes WHERE id = ? RETURNING k').get(id) as
      | { k: number }
      | undefined;
    this.releaseK(row?.k);
  }

  /** Lab progress of one student (or session) in one lab, as the engine's JSON. */
  getProgress(owner: string, lab: string): unknown {
    const row = this.db
      .prepare('SELECT body FROM progress WHERE owner = ? AND lab = ?')
      .get(owner, lab) as { body: string } | undefined;
    return row ? JSON.parse(row.body) : undefined;
  }

  saveProgress(owner: string, lab: string, body: unknown): void {
    this.db
      .prepare(
        'INSERT INTO progress (owner, lab, body, updated) VALUES (?, ?, ?, ?) ON CONFLICT (owner, lab) DO UPDATE SET body = excluded.body, updated = excluded.updated',
      )
      .run(owner, lab, JSON.stringify(body), Date.now());
  }

  deleteProgress(owner: string, lab: string): void {
    this.db.prepare('DELETE FROM progress WHERE owner = ? AND lab = ?').run(owner, lab);
  }

  addEvent(owner: string, lab: string, step: string, kind: string, detail: unknown): void {
    this.db
      .prepare('INSERT INTO events (owner, lab, step, kind, detail, at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(owner, lab, step, kind, JSON.stringify(detail), Date.now());
  }

  events(
    owner: string,
    lab: string,
  ): { step: string; kind: string; detail: unknown; at: number }[] {
    return (
      this.db
        .prepare(
          'SELECT step, kind, detail, at FROM events WHERE owner = ? AND lab = ? ORDER BY id',
        )
        .all(owner, lab) as { step: string; kind: string; detail: string; at: number }[]
    ).map((e) => ({ ...e, detail: JSON.parse(e.detail) }));
  }

  /**
   * Every event of these students in these labs, oldest first, without its
   * detail (only whether a hint said something): one query per 500
   * students, for the dashboard, which reads a whole class every 1.5 s.
   * Parsing each event's JSON was most of its cost.
   */
  eventSummaries(
    owners: string[],
    labs: string[],
  ): { owner: string; lab: string; step: string; kind: string; at: number; said: number }[] {
    if (owners.length === 0 || labs.length === 0) return [];
    const q = (n: number) => Array(n).fill('?').join(',');
    const out: {
      owner: string;
      lab: string;
      step: string;
      kind: string;
      at: number;
      said: number;
    }[] = [];
    for (let i = 0; i < owners.length; i += 500) {
      const part = owners.slice(i, i + 500);
      const rows = this.db
        .prepare(
          `SELECT owner, lab, step, kind, at,
                  (kind = 'hint' AND json_extract(detail, '$.hint') IS NOT NULL) AS said
             FROM events
            WHERE owner IN (${q(part.length)}) AND lab IN (${q(labs.length)}) ORDER BY owner, lab, id`,
        )
        .raw(true)
        .all(...part, ...labs) as [string, string, string, string, number, number][];
      // Rows as arrays: objects for ~20k rows were half the time.
      for (const [owner, lab, step, kind, at, said] of rows)
        out.push({ owner, lab, step, kind, at, said });
    }
    return out;
  }

  /** Progress bodies of these students in these labs, keyed `owner\0lab`. */
  progressOfMany(owners: string[], labs: string[]): Map<string, unknown> {
    const out = new Map<string, unknown>();
    if (owners.length === 0 || labs.length === 0) return out;
    const q = (n: number) => Array(n).fill('?').join(',');
    for (let i = 0; i < owners.length; i += 500) {
      const part = owners.slice(i, i + 500);
      const rows = this.db
        .prepare(
          `SELECT owner, lab, body FROM progress WHERE owner IN (${q(part.length)}) AND lab IN (${q(labs.length)})`,
        )
        .all(...part, ...labs) as { owner: string; lab: string; body: string }[];
      for (const r of rows) out.set(`${r.owner}\0${r.lab}`, JSON.parse(r.body) as unknown);
    }
    return out;
  }

  /** Whether this student id did anything before `at` (epoch ms). */
  hasStudentBefore(owner: string, at: number): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM events WHERE owner = ? AND at < ? LIMIT 1')
      .get(owner, at);
  }

  /** The sandbox session a student has open in a lab (survives a server restart). */
  getLabSession(owner: string, lab: string): string | undefined {
    const row = this.db
      .prepare('SELECT session FROM lab_sessions WHERE owner = ? AND lab = ?')
      .get(owner, lab) as { session: string } | undefined;
    return row?.session;
  }

  listLabSessions(): { owner: string; lab: string; session: string }[] {
    return this.db.prepare('SELECT owner, lab, session FROM lab_sessions').all() as {
      owner: string;
      lab: string;
      session: string;
    }[];
  }

  saveLabSession(owner: string, lab: string, session: string): void {
    this.db
      .prepare(
        'INSERT INTO lab_sessions (owner, lab, session, created) VALUES (?, ?, ?, ?) ON CONFLICT (owner, lab) DO UPDATE SET session = excluded.session, created = excluded.created',
      )
      .run(owner, lab, session, Date.now());
  }

  deleteLabSession(session: string): void {
    this.db.prepare('DELETE FROM lab_sessions WHERE session = ?').run(session);
  }

  /**
   * The failed checks' messages of these students in these labs, counted
   * per step and message (most frequent first), with how many students got
   * each.
   */
  failingMessages(
    owners: string[],
    labs: string[],
  ): { lab: string; step: string; message: string; count: number; students: number }[] {
    if (owners.length === 0 || labs.length === 0) return [];
    const q = (n: number) => Array(n).fill('?').join(',');
    return this.db
      .prepare(
        `SELECT lab, step, COALESCE(json_extract(detail, '$.message'), '') AS message,
                COUNT(*) AS count, COUNT(DISTINCT owner) AS students
           FROM events
          WHERE kind = 'check-fail' AND owner IN (${q(owners.length)}) AND lab IN (${q(labs.length)})
          GROUP BY lab, step, message
          ORDER BY count DESC, students DESC`,
      )
      .all(...owners, ...labs) as {
      lab: string;
      step: string;
      message: string;
      count: number;
      students: number;
    }[];
  }

  /** Adds a cohort; false if the name or the code is taken. */
  addCohort(c: CohortRow): boolean {
    const r = this.db
      .prepare('INSERT OR IGNORE INTO cohorts (name, code, body) VALUES (?, ?, ?)')
      .run(c.name, c.code, JSON.stringify(c));
    return r.changes === 1;
  }

  /** Rewrites a cohort, its code too (the join lookup reads the code column). */
  updateCohort(c: CohortRow): void {
    this.db
      .prepare('UPDATE cohorts SET code = ?, body = ? WHERE name = ?')
      .run(c.code, JSON.stringify(c), c.name);
  }

  getCohort(name: string): CohortRow | undefined {
    const row = this.db.prepare('SELECT body FROM cohorts WHERE name = ?').get(name) as
      | { body: string }
      | undefined;
    return row ? (JSON.parse(row.body) as CohortRow) : undefined;
  }

  cohortByCode(code: string): CohortRow | undefined {
    const row = this.db.prepare('SELECT body FROM cohorts WHERE code = ?').get(code) as
      | { body: string }
      | undefined;
    return row ? (JSON.parse(row.body) as CohortRow) : undefined;
  }

  listCohorts(): CohortRow[] {
    return (
      this.db.prepare('SELECT body FROM cohorts ORDER BY name').all() as { body: string }[]
    ).map((r) => JSON.parse(r.body) as CohortRow);
  }

  /**
   * Seats a student in a cohort, or renames one already seated. In one
   * transaction with the seat count, so two joins can never both take the
   * last seat. 'full' when every seat is taken by someone else.
   */
  addMember(
    cohort: string,
    student: string,
    display: string,
    seats?: number,
  ): 'joined' | 'again' | 'full' {
    const tx = this.db.transaction(() => {
      const had = this.db
        .prepare('SELECT 1 FROM cohort_members WHERE cohort = ? AND student = ?')
        .get(cohort, student);
      if (had) {
        this.db
          .prepare('UPDATE cohort_members SET display = ? WHERE cohort = ? AND student = ?')
          .run(display, cohort, student);
        return 'again' as const;
      }
      if (seats !== undefined) {
        const n = (
          this.db
            .prepare('SELECT COUNT(*) AS n FROM cohort_members WHERE cohort = ?')
            .get(cohort) as {
            n: number;
          }
        ).n;
        if (n >= seats) return 'full' as const;
      }
      this.db
        .prepare(
          'INSERT INTO cohort_members (cohort, student, display, joined) VALUES (?, ?, ?, ?)',
        )
        .run(cohort, student, display, Date.now());
      return 'joined' as const;
    });
    return tx.immediate();
  }

  addNotice(cohort: string, text: string, at: number): void {
    this.db
      .prepare('INSERT INTO cohort_notices (cohort, text, at) VALUES (?, ?, ?)')
      .run(cohort, text, at);
  }

  /** The newest notice to a cohort, if any. */
  lastNotice(cohort: string): { text: string; at: number } | undefined {
    return this.db
      .prepare(
        'SELECT text, at FROM cohort_notices WHERE cohort = ? ORDER BY at DESC, rowid DESC LIMIT 1',
      )
      .get(cohort) as { text: string; at: number } | undefined;
  }

  /**
   * How many of a cohort's students have a lab: a kept disk of it or a live
   * lab session (one query over the primary keys; per student in JS it took
   * 14 ms for a class of 200).
   */
  countMembersWithLab(cohort: string, lab: string): number {
    return (
      this.db
        .prepare(
          `SELECT count(*) AS n FROM cohort_members m WHERE m.cohort = ? AND (
             EXISTS (SELECT 1 FROM disks d WHERE d.owner = m.student AND d.name = ?)
             OR EXISTS (SELECT 1 FROM lab_sessions l WHERE l.owner = m.student AND l.lab = ?))`,
        )
        .get(cohort, lab, lab) as { n: number }
    ).n;
  }

  /** Whether a student sits in a cohort (the primary key: one read). */
  isMember(cohort: string, student: string): boolean {
    return !!this.db
      .prepare('SELECT 1 FROM cohort_members WHERE cohort = ? AND student = ?')
      .get(cohort, student);
  }

  members(cohort: string): MemberRow[] {
    return this.db
      .prepare(
        'SELECT cohort, student, display, joined FROM cohort_members WHERE cohort = ? ORDER BY joined',
      )
      .all(cohort) as MemberRow[];
  }

  /** Takes a student out of a cohort (their seat frees); false if they were not in it. */
  removeMember(cohort: string, student: string): boolean {
    return (
      this.db
        .prepare('DELETE FROM cohort_members WHERE cohort = ? AND student = ?')
        .run(cohort, student).changes === 1
    );
  }

  /** The cohorts a student sits in. */
  memberOf(student: string): MemberRow[] {
    return this.db
      .prepare(
        'SELECT cohort, student, display, joined FROM cohort_members WHERE student = ? ORDER BY joined',
      )
      .all(student) as MemberRow[];
  }

  /** A server-wide value, created once (e.g. the secret tokens are derived from). */
  meta(key: string, make: () => string): string {
    const tx = this.db.transaction(() => {
      const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
        | { value: string }
        | undefined;
      if (row) return row.value;
      const value = make();
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(key, value);
      return value;
    });
    return tx.immediate();
  }

  close(): void {
    this.db.close();
  }
}

/**
 * A student's sandbox for one lab: started on first visit, resumed on reload
 * (same sandbox, same terminals), re-adopted after a server restart. Its
 * session disk is kept for the student (docs/sandbox.md#kept-disks): when the
 * sandbox is gone (parked when idle, lost, a host reboot) the next start
 * rebuilds it on their files, with a notice that programs are new. The
 * (student, lab) -> session link lives in SQLite; tokens are derived from a
 * server secret so a resumed or re-adopted session keeps the token its tabs
 * already hold.
 */
import * as crypto from 'node:crypto';
import type { LabSession, SessionCreated } from '../protocol/index';
import type { SandboxManager } from '../sandbox/index';
import type { Admission, Slot } from '../sessions/admission';
import type { Session, SessionManager } from '../sessions/session-manager';
import type { Terminal } from '../terminals/terminal';
import type { Store } from '../store/store';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import type { LabCatalog } from './catalog';
import type { LoadedLab } from './loader';
import { labSandboxOptions, notApplicable, prepareSandbox } from './runtime';
import { WARM_OWNER, WarmPool, type ClassWants, type Seat } from './warm-pool';

export class LabSessions {
  private readonly secret: string;
  /** In-flight starts, so two tabs opening the same lab get one sandbox. */
  private readonly starting = new Map<string, Promise<LabSession>>();
  /** Each student's latest start (starts of one student run one after another). */
  private readonly ownerChain = new Map<string, Promise<unknown>>();
  /** `owner\0lab` of resets under way (warmUp's `held`). */
  private readonly startingOver = new Set<string>();
  /** Why a student's sandbox for a lab was ended by us, told on their next start there. */
  private readonly endedWhy = new Map<string, string>();
  /** Sandboxes started ahead for students to take (serve --warm). */
  private warm: WarmPool | undefined;

  constructor(
    private readonly sessions: SessionManager,
    private readonly sandboxes: SandboxManager,
    private readonly store: Store,
    private readonly catalog: LabCatalog,
    private readonly log: Logger,
    /** Admission control (serve); without it (tests, CLI) every start is admitted. */
    private readonly admission?: Admission,
  ) {
    this.secret = store.meta('token-secret', () => crypto.randomBytes(32).toString('hex'));
  }

  private token = (id: string) =>
    crypto.createHmac('sha256', this.secret).update(`session:${id}`).digest('base64url');

  /**
   * Keeps `wanted` seats of each lab started ahead (labs/warm-pool.ts); a
   * student with no files of their own in the lab takes one instead of
   * waiting for a start; `held` says how many of a lab's seats the classes
   * on now still want, the student's and the others' (the others' are
   * kept from the student). Call after restore(): it drops the disks of
   * seats a previous run left.
   */
  warmUp(
    wanted: ReadonlyMap<string, number> | (() => ReadonlyMap<string, number>),
    held?: (labId: string, owner: string, startingOver: boolean) => ClassWants,
  ): WarmPool {
    this.warm = new WarmPool(
      this.sessions,
      this.sandboxes,
      this.store,
      this.catalog,
      this.log,
      this.admission,
      this.token,
      wanted,
      held && ((lab, owner) => held(lab, owner, this.startingOver.has(`${owner}\0${lab}`))),
    );
    this.warm.sweep();
    this.warm.fill();
    return this.warm;
  }

  /** The student's live session in the lab, if any. */
  find(owner: string, labId: string): Session | undefined {
    const id = this.store.getLabSession(owner, labId);
    const s = id ? this.sessions.get(id) : undefined;
    return s && s.owner === owner && s.lab === labId ? s : undefined;
  }

  /**
   * Starts or resumes; opens any of the lab's named terminals that are not
   * running. `client` is the remote address, for per-client limits.
   */
  start(owner: string, labId: string, client = 'local'): Promise<LabSession> {
    const key = `${owner}\0${labId}`;
    let p = this.starting.get(key);
    if (!p) {
      // One start at a time per student (another lab's start waits), so the
      // per-student limit sees every sandbox the student has or is getting.
      const before = this.ownerChain.get(owner) ?? Promise.resolve();
      p = before
        .catch(() => {})
        .then(() => this.doStart(owner, labId, client))
        .finally(() => {
          this.starting.delete(key);
          if (this.ownerChain.get(owner) === chained) this.ownerChain.delete(owner);
        });
      const chained = p.catch(() => {});
      this.ownerChain.set(owner, chained);
      this.starting.set(key, p);
    }
    return p;
  }

  /**
   * A student runs at most perStudent lab sandboxes at once: starting another
   * ends the one that has been without a tab the longest (its progress stays;
   * its next start says why its files are gone). With every one of them open
   * in a tab, the start is refused instead.
   */
  private async makeRoom(owner: string, labId: string): Promise<void> {
    const limit = this.admission?.limits.perStudent;
    if (!limit) return;
    const mine = this.sessions.list().filter((x) => x.owner === owner && x.lab !== labId);
    if (mine.length < limit) return;
    const idle = mine
      .filter((x) => x.connections === 0)
      .sort((a, b) => a.lastActive - b.lastActive)
      .slice(0, mine.length - limit + 1);
    if (mine.length - idle.length >= limit) {
      const titles = mine.map(
        (x) => this.catalog.labs.get(x.lab ?? '')?.lab.metadata.title ?? x.lab,
      );
      throw new RequestError(
        'rate-limited',
        `You already have ${mine.length} lab${mine.length === 1 ? '' : 's'} running (${titles.join(', ')}); at most ${limit} run at once.`,
        { hint: 'Close the tab of a lab you are not using, then try again.' },
      );
    }
    const title = this.catalog.labs.get(labId)?.lab.metadata.title ?? labId;
    for (const x of idle) {
      this.log.info('lab session ended to make room', { session: x.id, lab: x.lab, for: labId });
      this.endedWhy.set(
        `${owner}\0${x.lab}`,
        `Your sandbox for this lab was stopped when you started "${title}" (at most ${limit} labs run at once). Your files and progress are back; programs that were running were not kept: start them again if a step needs them.`,
      );
      // Bounded: a student who never comes back leaves one entry per lab.
      if (this.endedWhy.size > 10_000)
        this.endedWhy.delete(this.endedWhy.keys().next().value as string);
      await this.sessions.end(x.id);
    }
  }

  /**
   * Ends the student's sandbox for the lab and starts a fresh one in its
   * place (`forget` runs in between: the engine forgets progress). The
   * rates are taken first and the old sandbox's admission place goes to the
   * new one, so a reset that is refused ends nothing, and a reset never
   * puts the student behind the line.
   */
  async reset(
    owner: string,
    labId: string,
    client: string,
    forget: () => void,
    /** A restart at a step: what the fresh sandbox's notice tells the student. */
    at?: { notice: string },
  ): Promise<LabSession> {
    return this.inOrder(owner, async () => {
      this.admission?.take('start', owner);
      this.admission?.take('client-start', client);
      const s = this.find(owner, labId);
      // Their classes counted them as having the lab until the files go:
      // the fresh start is not one more of their class's warm seats.
      const key = `${owner}\0${labId}`;
      if (s || this.store.getDisk(owner, labId)) this.startingOver.add(key);
      try {
        const slot = s ? await this.sessions.endKeepingSlot(s.id, 'the lab was reset') : undefined;
        await this.dropFiles(owner, labId);
        forget();
        return await this.doStart(owner, labId, client, {
          slot,
          rated: true,
          ...(at ? { at } : {}),
        });
      } finally {
        this.startingOver.delete(key);
      }
    });
  }

  /** Runs `f` after the student's starts and resets under way, and before any that come later. */
  private async inOrder<T>(owner: string, f: () => Promise<T>): Promise<T> {
    const before = this.ownerChain.get(owner) ?? Promise.resolve();
    const p = before.catch(() => {}).then(f);
    const chained = p.catch(() => {});
    this.ownerChain.set(owner, chained);
    try {
      return await p;
    } finally {
      if (this.ownerChain.get(owner) === chained) this.ownerChain.delete(owner);
    }
  }

  private async doStart(
    owner: string,
    labId: string,
    client: string,
    pre: {
      slot: Slot | undefined;
      rated: boolean;
      at?: { notice: string };
    } = { slot: undefined, rated: false },
  ): Promise<LabSession> {
    const loaded = this.catalog.labs.get(labId);
    if (!loaded) throw new RequestError('not-found', `no lab with id ${JSON.stringify(labId)}`);
    const na = notApplicable(loaded.lab, this.catalog.mode);
    if (na) throw new RequestError('unsupported', `this lab cannot run here: ${na}`);
    let s = this.find(owner, labId);
    let startMs = 0;
    let notice: string | undefined;
    if (!s) {
      // A row without a live session: the sandbox is gone (the server or the
      // host restarted, or it was parked); its disk, if kept, brings the files back.
      const hadOne = !!this.store.getLabSession(owner, labId);
      // A warm seat if one is ready and the student has no files of their
      // own in this lab (those come back on a start of their own). A seat is
      // a live sandbox already: it needs no place in line.
      const seatable = !!this.warm?.hasSeats(labId, owner) && !this.store.getDisk(owner, labId);
      // A place first (a student waiting in line asks again every few
      // seconds, and waiting must not use up the start rate), then the
      // rates, and only then room among the student's own labs: a refused
      // start ends nothing. (A seat brings its place; the client's cap
      // still applies.)
      if (seatable && !pre.slot) this.admission?.checkClient(client);
      let slot = pre.slot ?? (seatable ? undefined : this.admit(client, owner));
      try {
        if (!pre.rated) {
          this.admission?.take('start', owner);
          this.admission?.take('client-start', client);
        }
        await this.makeRoom(owner, labId);
      } catch (err) {
        slot?.release();
        throw err;
      }
      const t0 = Date.now();
      // Taken by another student while room was made: a start of its own.
      const seat = seatable ? this.warm?.take(labId, owner) : undefined;
      if (seatable && !seat) slot ??= this.admit(client, owner);
      const created = seat
        ? this.takeSeat(seat, owner, labId, client, slot)
        : await this.startMakingRoom(loaded, owner, labId, slot);
      const why = this.endedWhy.get(`${owner}\0${labId}`);
      this.endedWhy.delete(`${owner}\0${labId}`);
      startMs = Date.now() - t0;
      this.store.saveLabSession(owner, labId, created.session);
      s = this.sessions.get(created.session) as Session;
      if (pre.at) notice = pre.at.notice;
      else if (s.sandbox.record.resources.restored)
        notice =
          why ??
          'Welcome back: your files are as you left them, in a new sandbox. Programs that were running (and mounts, cgroups and anything else held in memory) were not kept: start them again if a step needs them.';
      else if (hadOne || why || this.store.getProgress(owner, labId) !== undefined)
        notice =
          'Your previous sandbox and its files could not be kept, so this is a fresh one. Your progress is kept; steps that need earlier work may have to be redone.';
      if (notice) s.notice = notice;
    }
    // A shell the student exited (or the grace period closed) comes back fresh.
    for (const [id, e] of s.terminals)
      if (e.terminal.exited) await this.sessions.closeTerminal(s, id);
    const names = new Set([...s.terminals.values()].map((e) => e.terminal.name));
    for (const t of loaded.lab.sandbox.terminals) {
      if (!names.has(t.name)) this.sessions.openTerminal(s, { name: t.name, cols: 80, rows: 24 });
    }
    notice = s.notice;
    s.notice = undefined;
    return {
      session: s.id,
      token: this.token(s.id),
      hostname: s.sandbox.record.hostname,
      terminals: [...s.terminals.values()].map((e) => ({
        term: e.terminal.id,
        name: e.terminal.name,
      })),
      ...(notice ? { notice } : {}),
      startMs,
    };
  }

  /**
   * A warm seat becomes the student's (synchronous: nothing else happens
   * between taking it and handing it over): its disk, its admission place
   * (the student's client's cap applies; refused, the seat goes back).
   */
  private takeSeat(
    seat: Seat,
    owner: string,
    labId: string,
    client: string,
    slot: Slot | undefined,
  ): SessionCreated {
    const s = seat.session;
    const disk = s.sandbox.record.resources.keptDisk as string;
    let place: Slot | undefined;
    let reowned = false;
    try {
      this.store.reownDisk(disk, owner, labId);
      reowned = true;
      // A reset (or an instructor's move) brings the old sandbox's place:
      // it goes on, as in a start of its own. Otherwise the seat's place
      // becomes the student's client's, within its cap.
      place =
        slot ??
        (this.admission && s.slot ? this.admission.handOver(s.slot, client, owner) : undefined);
      this.sessions.handOver(s, owner, place);
    } catch (err) {
      // The disk is the pool's again first, whatever comes next: a retry by
      // the student must not find it theirs (a cold start would find it in
      // use, or later restore a seat's files as theirs).
      try {
        if (reowned) this.store.reownDisk(disk, WARM_OWNER, seat.diskName);
        reowned = false;
      } catch {
        // Dropped under the student's name below.
      }
      // Given back only whole: with its disk and its own place, still the
      // pool's. Once its place went to the student's client it cannot be,
      // and it ends.
      const placeGone = place !== undefined && place !== slot;
      if (!reowned && !placeGone && s.owner === WARM_OWNER) this.warm?.giveBack(seat);
      else {
        // Files that were never the student's go with it (an untaken seat's
        // disk left by a failed drop goes at the next sweep).
        if (placeGone) place?.release();
        void this.sessions
          .end(s.id, 'a warm seat could not be handed over')
          .then(() =>
            reowned
              ? this.sandboxes.dropDisk(owner, labId)
              : this.sandboxes.dropDisk(WARM_OWNER, seat.diskName),
          )
          .catch(() => {});
      }
      slot?.release();
      throw err;
    }
    return { session: s.id, token: this.token(s.id), hostname: s.sandbox.record.hostname };
  }

  /**
   * A cold start that, short of room on the host disk or of id ranges,
   * takes the room of untaken warm seats before any student's parked files
   * go: while seats exist it starts without dropping parked disks, and on
   * each refusal a seat gives its room up; with none left, the usual start
   * (which may drop parked disks). The student's admission place is held
   * throughout (a failed create releases it: taken again at once).
   */
  private async startMakingRoom(
    loaded: LoadedLab,
    owner: string,
    labId: string,
    slot: Slot | undefined,
  ): Promise<SessionCreated> {
    let place = slot;
    for (;;) {
      const spare = !!this.warm?.anySeats(owner);
      try {
        return await this.coldStart(loaded, owner, labId, place, spare ? false : undefined);
      } catch (err) {
        if (!(err instanceof RequestError && err.short) || !spare) throw err;
        // The place was ours a moment ago: held while a seat makes room.
        place = place && this.admission ? this.admission.adopt(place.client) : place;
        if (!(await this.warm?.yieldRoom(owner))) {
          // None left to give: the usual start, which may drop parked disks.
          return this.coldStart(loaded, owner, labId, place);
        }
      }
    }
  }

  /**
   * A place for a new sandbox (Admission.admit); with the host full, an
   * untaken warm seat gives its place up to the student first in line (the
   * place is theirs: asked for by anyone behind, it would go ahead to
   * another, and a class's seat to someone outside the class): seats never
   * keep a student in line.
   */
  private admit(client: string, owner: string): Slot | undefined {
    try {
      return this.admission?.admit(client, owner);
    } catch (err) {
      if (
        !(err instanceof RequestError && err.kind === 'full') ||
        !this.admission?.firstInLine(owner) ||
        !this.warm?.yieldPlace(owner)
      )
        throw err;
      return this.admission.admit(client, owner);
    }
  }

  /**
   * A new sandbox for the student: through the gate, the sandbox, the lab's
   * setup and its first shell up to its first output - a start's CPU work
   * up to the prompt. The answer goes out once that shell is spawned (the
   * client connects while it starts); the gate is held until it has
   * printed. The lab's other shells follow through the same gate at low
   * priority.
   */
  private coldStart(
    loaded: LoadedLab,
    owner: string,
    labId: string,
    slot: Slot | undefined,
    dropParked?: false,
  ): Promise<SessionCreated> {
    return new Promise<SessionCreated>((resolve, reject) => {
      void this.sessions.startGate.run(async () => {
        let shells: Terminal[];
        try {
          const c = await this.sessions.create({
            ...labSandboxOptions(loaded.lab),
            token: this.token,
            owner,
            lab: labId,
            keepDisk: { owner, name: labId },
            prepare: (sb) => prepareSandbox(loaded, sb),
            ...(slot ? { slot } : {}),
            ...(dropParked === false ? { dropParked } : {}),
          });
          const fresh = this.sessions.get(c.session) as Session;
          // The first shell now; the others after every start waiting here
          // (a herd's first prompts first). All are listed in the answer.
          shells = loaded.lab.sandbox.terminals.map((t, i) =>
            this.sessions.openTerminal(fresh, { name: t.name, cols: 80, rows: 24, later: i > 0 }),
          );
          resolve(c);
        } catch (err) {
          reject(err);
          return;
        }
        await shells[0]?.started(2_000);
      });
    });
  }

  async end(owner: string, labId: string, reason?: string): Promise<boolean> {
    const s = this.find(owner, labId);
    if (!s) return false;
    await this.sessions.end(s.id, reason);
    return true;
  }

  /**
   * Ends the student's sandbox for the lab in their order of starts, so a
   * start under way is ended too, once it is there (a student removed from
   * their class). True if a sandbox was ended.
   */
  endInOrder(owner: string, labId: string, reason: string): Promise<boolean> {
    return this.inOrder(owner, () => this.end(owner, labId, reason));
  }

  /**
   * An instructor's reset (the student's own is reset()): ends the student's
   * sandbox for the lab, if any, and drops their files for it, so their
   * next start is the lab's own. In the student's order of starts, so a
   * start under way is not left on a disk being dropped. True if a sandbox
   * was ended.
   */
  async endAfresh(
    owner: string,
    labId: string,
    reason: string,
    /** Forgets the progress, once the files are gone (as reset() does). */
    forget: () => void,
  ): Promise<boolean> {
    return this.inOrder(owner, async () => {
      const s = this.find(owner, labId);
      if (s) await this.sessions.end(s.id, reason);
      await this.dropFiles(owner, labId);
      forget();
      return !!s;
    });
  }

  /**
   * Drops the student's kept files for the lab. A sandbox just ended may
   * hold its disk on the host a moment longer (a mount namespace the kernel
   * releases late), so its teardown was quarantined: retry it, a few seconds
   * at most, before the disk can go.
   */
  private async dropFiles(owner: string, labId: string): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        this.sandboxes.dropDisk(owner, labId);
        return;
      } catch (err) {
        if (!(err instanceof RequestError && err.kind === 'conflict') || i >= 20) throw err;
        await new Promise((r) => setTimeout(r, 250));
        await this.sandboxes.retryQuarantined();
      }
    }
  }

  /**
   * After a restart: wrap every adopted sandbox that belongs to a lab session
   * in a session again (terminals reopen on the next visit, with a notice);
   * sandboxes nobody owns are destroyed.
   */
  async restore(adopted: string[]): Promise<{ restored: number; destroyed: number }> {
    const rows = new Map(this.store.listLabSessions().map((r) => [r.session, r]));
    let restored = 0;
    let destroyed = 0;
    for (const id of adopted) {
      const row = rows.get(id);
      if (row && this.catalog.labs.has(row.lab)) {
        this.sessions.adopt(this.sandboxes.get(id), {
          token: this.token,
          owner: row.owner,
          lab: row.lab,
          ...(this.admission ? { slot: this.admission.adopt() } : {}),
        });
        const s = this.sessions.get(id) as Session;
        s.notice =
          'The server restarted. Your sandbox and its files and processes were kept; the terminals are new shells.';
        restored++;
      } else {
        // Never throws: a sandbox that cannot be torn down is quarantined, and the start goes on.
        await this.sandboxes.teardownOrQuarantine(this.sandboxes.get(id));
        destroyed++;
      }
    }
    this.log.info('lab sessions restored', { restored, destroyed });
    return { restored, destroyed };
  }
}

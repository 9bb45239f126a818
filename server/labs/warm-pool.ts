/**
 * Warm seats (docs/operating.md#warm-seats): sandboxes of a lab started
 * ahead of a class - created, the lab's files copied and its setup run,
 * every shell at its prompt - so that a student who opens the lab with no
 * files of their own there takes one instead of waiting for a start. A
 * class of a hundred opening the same lab at once costs a slow host tens of
 * seconds of CPU; taken seats cost none of it. The seats a class asked for
 * are held for its students (`held`).
 *
 * A seat is a lab session owned by nobody (WARM_OWNER): it holds an
 * admission place (it is a live sandbox), its disk is kept under
 * WARM_OWNER until taken, and it never idles out. Taking one is synchronous
 * (no other start can take the same seat): the disk is re-owned to the
 * student in the store, the admission place handed to the student's
 * client, and the session becomes an ordinary lab session. Seats are made
 * one at a time, at the start gate's low priority (students' own starts go
 * first), and only while the host has room and nobody waits in line. A
 * seat made from a lab as it was before an edit (serve --dev) is never
 * handed out. On a restart, seats are destroyed like any sandbox without a
 * lab session (LabSessions.restore) and their disks dropped (sweep).
 */
import * as crypto from 'node:crypto';
import type { SandboxManager } from '../sandbox/index';
import type { Admission } from '../sessions/admission';
import type { Session, SessionManager } from '../sessions/session-manager';
import type { Store } from '../store/store';
import { RequestError } from '../util/errors';
import type { Logger } from '../util/logger';
import type { LabCatalog } from './catalog';
import type { LoadedLab } from './loader';
import { labSandboxOptions, notApplicable, prepareSandbox } from './runtime';

/** The owner of seats not yet taken. Student ids are base64url: never this. */
export const WARM_OWNER = '~warm';

/**
 * Seats of a lab the classes now on still want, for one student: `own` by
 * the classes the student is in, `others` by the rest.
 */
export interface ClassWants {
  own: number;
  others: number;
}

/**
 * Of `ready` seats of a lab, how many are held from a student for the
 * classes they are not in. A student whose own classes want none (a student
 * of no class, or one beyond their class's figure): all the others still
 * want, so that only seats beyond those (`serve --warm`'s extra) are theirs.
 * A student whose class still wants some: the others' share of what is
 * ready, in proportion to what each side wants, so that two classes on a
 * lab whose pool is not full (the host's room) never lock each other out;
 * each takes at most its own figure this way, since its takes lower `own`.
 */
export function heldShare(wants: ClassWants, ready: number): number {
  if (wants.others <= 0) return 0;
  if (wants.own <= 0) return Math.min(ready, wants.others);
  return Math.floor((wants.others * ready) / (wants.others + wants.own));
}

const NO_CLASSES: ClassWants = { own: 0, others: 0 };

/** After a seat of a lab failed to start, the next try waits this long. */
const RETRY_AFTER_FAILURE_MS = 60_000;

export interface Seat {
  session: Session;
  /** The lab as it was loaded when the seat was made. */
  loaded: LoadedLab;
  /** The seat's kept disk's name under WARM_OWNER. */
  diskName: string;
}

export interface WarmStatus {
  wanted: number;
  ready: number;
  preparing: number;
}

export class WarmPool {
  private readonly seats = new Map<string, Seat[]>();
  private preparing: string | undefined;
  private readonly failedAt = new Map<string, number>();
  private closed = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly sessions: SessionManager,
    private readonly sandboxes: SandboxManager,
    private readonly store: Store,
    private readonly catalog: LabCatalog,
    private readonly log: Logger,
    private readonly admission: Admission | undefined,
    private readonly token: (id: string) => string,
    /**
     * Seats wanted per lab id: fixed (serve --warm), or asked again at each
     * fill (the classes' `warm`, which come and go with their hours).
     */
    private readonly wanted: ReadonlyMap<string, number> | (() => ReadonlyMap<string, number>),
    /**
     * The seats of the lab the classes now on still want, the student's
     * and the others' (a class's `warm` is for its own students): the
     * others' are held from the student (heldShare). None by default
     * (serve --warm's are anyone's).
     */
    private readonly held: (labId: string, owner: string) => ClassWants = () => NO_CLASSES,
  ) {
    for (const lab of this.want().keys())
      if (!catalog.labs.has(lab))
        log.warn('warm seats for a lab that is not loaded', {
          lab,
          labs: [...catalog.labs.keys()],
        });
  }

  /**
   * A ready seat of the lab, made from the lab as it is loaded now, taken
   * out of the pool for the student (the caller hands it over, or gives it
   * back); none while every ready seat is held for classes the student is
   * not in. Synchronous.
   */
  take(labId: string, owner: string): Seat | undefined {
    const ready = this.live(labId).length;
    if (ready <= this.heldFrom(labId, owner, ready)) return undefined;
    const list = this.seats.get(labId);
    const loaded = this.catalog.labs.get(labId);
    while (list?.length) {
      const seat = list.shift() as Seat;
      if (this.sessions.get(seat.session.id) !== seat.session) continue; // ended meanwhile
      if (seat.loaded !== loaded) {
        void this.discard(seat, 'the lab changed');
        continue;
      }
      // Its place in the pool is made again, behind the students' own starts.
      setImmediate(() => this.fill());
      return seat;
    }
    return undefined;
  }

  /** Whether any seat of any lab not held from the student may be ready. */
  anySeats(owner: string): boolean {
    for (const [lab, list] of this.seats)
      if (list.length > this.heldFrom(lab, owner, list.length)) return true;
    return false;
  }

  /** Whether a seat of the lab may be ready for the student (take() says for sure). */
  hasSeats(labId: string, owner: string): boolean {
    const ready = this.seats.get(labId)?.length ?? 0;
    return ready > this.heldFrom(labId, owner, ready);
  }

  /** A seat taken but not handed over (the student was refused): first in line again. */
  giveBack(seat: Seat): void {
    const lab = seat.loaded.lab.metadata.id;
    this.seats.set(lab, [seat, ...(this.seats.get(lab) ?? [])]);
  }

  status(): Record<string, WarmStatus> {
    const out: Record<string, WarmStatus> = {};
    for (const [lab, wanted] of this.want())
      out[lab] = {
        wanted,
        ready: this.live(lab).length,
        preparing: this.preparing === lab ? 1 : 0,
      };
    return out;
  }

  /**
   * Makes the next missing seat, then the one after (one at a time, so a
   * pool filling up takes at most one core); drops seats of a lab since
   * edited. Called at start, after each take and by housekeeping.
   */
  fill(): void {
    if (this.closed || this.preparing) return;
    const lab = this.nextWanted();
    if (!lab) {
      // Short of seats while the host is full or students wait: look again
      // soon (places free up as sessions end, and nothing else calls).
      if (!this.retry && this.lacking()) {
        this.retry = setTimeout(() => {
          this.retry = undefined;
          this.fill();
        }, 2_000);
        this.retry.unref();
      }
      return;
    }
    this.preparing = lab;
    let later = false;
    this.sessions.startGate
      .runLow(async () => {
        // The gate lets low work in after a few seconds even when students'
        // starts wait: a seat then gives way, and asks again in a second.
        // The room is looked at again too (it was queued a while ago).
        if (this.sessions.startGate.waiting > 0 || !this.hasRoom()) {
          later = this.sessions.startGate.waiting > 0;
          return;
        }
        await this.makeSeat(lab);
      })
      .done.catch((err: Error) => {
        this.failedAt.set(lab, Date.now());
        this.log.warn('warm seat failed to start', { lab, error: err.message });
      })
      .finally(() => {
        this.preparing = undefined;
        if (later) setTimeout(() => this.fill(), 1_000).unref();
        else this.fill();
      });
  }

  /**
   * Ends one untaken seat so that a student who would wait in line gets its
   * place instead (seats are there for students, never ahead of them; a
   * class's only for its own). Its place is free when this returns; the
   * sandbox ends in the background.
   */
  yieldPlace(owner: string): boolean {
    const seat = this.popSeat(owner);
    if (!seat) return false;
    seat.session.slot?.release();
    delete seat.session.slot;
    void this.discard(seat, 'a student needed its place', false);
    return true;
  }

  /**
   * Ends one untaken seat and waits until its sandbox and disk are gone: a
   * student's start refused for room on the host disk gets that room.
   */
  async yieldRoom(owner: string): Promise<boolean> {
    const seat = this.popSeat(owner);
    if (!seat) return false;
    await this.discard(seat, 'a student needed its room on the host disk', false);
    return true;
  }

  /** The newest live seat of the lab with the most not held from the student, out of the pool. */
  private popSeat(owner: string): Seat | undefined {
    for (;;) {
      let from: Seat[] | undefined;
      for (const [lab, list] of this.seats)
        if (
          list.length > (from?.length ?? 0) &&
          list.length > this.heldFrom(lab, owner, list.length)
        )
          from = list;
      const seat = from?.pop();
      if (!seat || this.sessions.get(seat.session.id) === seat.session) return seat;
    }
  }

  /** No more seats are made (server stop); those made stay, for restore to end. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
  }

  /**
   * Drops the disks of seats that are gone (a restart, a failed start, a
   * discarded seat whose disk was still held); disks of live seats stay.
   */
  sweep(): void {
    const live = new Set<string>();
    for (const list of this.seats.values())
      for (const s of list) if (this.sessions.get(s.session.id) === s.session) live.add(s.diskName);
    for (const d of this.store.listDisksOf(WARM_OWNER)) {
      if (live.has(d.name)) continue;
      try {
        this.sandboxes.dropDisk(d.owner, d.name);
      } catch (err) {
        // In use: a seat being made, or a teardown not done yet. Next sweep.
        if (!(err instanceof RequestError)) throw err;
      }
    }
  }

  /** Of `ready` seats of the lab, how many the student may not have (heldShare). */
  private heldFrom(lab: string, owner: string, ready: number): number {
    if (ready === 0) return 0;
    return heldShare(this.held(lab, owner), ready);
  }

  /** Whether some lab that can run here has fewer seats than wanted. */
  private lacking(): boolean {
    for (const [lab, wanted] of this.want()) {
      const loaded = this.catalog.labs.get(lab);
      if (loaded && !notApplicable(loaded.lab, this.catalog.mode) && this.live(lab).length < wanted)
        return true;
    }
    return false;
  }

  /** A seat is a sandbox: made only while the host has room and nobody waits in line. */
  private hasRoom(): boolean {
    const a = this.admission;
    return !a || (a.used < a.limits.capacity && a.waiting === 0);
  }

  /** The first lab (in the order configured) that lacks a seat, if one may be made now. */
  private nextWanted(): string | undefined {
    // Seats of a lab edited, removed or no longer able to run here go first.
    for (const lab of this.seats.keys()) this.live(lab);
    if (!this.hasRoom()) return undefined;
    for (const [lab, wanted] of this.want()) {
      const loaded = this.catalog.labs.get(lab);
      if (!loaded || notApplicable(loaded.lab, this.catalog.mode)) continue;
      if (Date.now() - (this.failedAt.get(lab) ?? 0) < RETRY_AFTER_FAILURE_MS) continue;
      if (this.live(lab).length < wanted) return lab;
    }
    return undefined;
  }

  private want(): ReadonlyMap<string, number> {
    return typeof this.wanted === 'function' ? this.wanted() : this.wanted;
  }

  /**
   * The lab's seats still usable; ended ones forgotten, stale ones
   * discarded, and those beyond the number now wanted (a class over) too.
   */
  private live(lab: string): Seat[] {
    const loaded = this.catalog.labs.get(lab);
    const usable = loaded && !notApplicable(loaded.lab, this.catalog.mode);
    const keep: Seat[] = [];
    const stale: Seat[] = [];
    for (const seat of this.seats.get(lab) ?? []) {
      if (this.sessions.get(seat.session.id) !== seat.session) continue;
      (usable && seat.loaded === loaded ? keep : stale).push(seat);
    }
    const extra = keep.splice(this.want().get(lab) ?? 0);
    // Set before discarding: discard() edits the pool's lists.
    this.seats.set(lab, keep);
    for (const seat of stale) void this.discard(seat, 'the lab changed');
    for (const seat of extra) void this.discard(seat, 'fewer seats wanted', false);
    return keep;
  }

  private async makeSeat(lab: string): Promise<void> {
    const loaded = this.catalog.labs.get(lab);
    if (!loaded || this.closed) return;
    const diskName = `${lab}#${crypto.randomBytes(6).toString('hex')}`;
    const c = await this.sessions.create({
      ...labSandboxOptions(loaded.lab),
      token: this.token,
      owner: WARM_OWNER,
      lab,
      keepDisk: { owner: WARM_OWNER, name: diskName },
      prepare: (sb) => prepareSandbox(loaded, sb),
      warm: true,
      ...(this.admission ? { slot: this.admission.adopt(WARM_OWNER) } : {}),
    });
    const s = this.sessions.get(c.session) as Session;
    try {
      const shells = loaded.lab.sandbox.terminals.map((t) =>
        this.sessions.openTerminal(s, { name: t.name, cols: 80, rows: 24 }),
      );
      // Every shell at its prompt: what a taken seat saves its student.
      await Promise.all(shells.map((t) => t.started(30_000)));
      if (shells.some((t) => t.exited)) throw new Error('a shell of the seat ended at once');
    } catch (err) {
      // Not in the pool, so nothing else would ever end it.
      await this.discard({ session: s, loaded, diskName }, 'it did not start');
      throw err;
    }
    const seat = { session: s, loaded, diskName };
    if (this.closed || this.sessions.get(s.id) !== s) return;
    const list = this.seats.get(lab) ?? [];
    list.push(seat);
    this.seats.set(lab, list);
    this.failedAt.delete(lab);
    this.log.info('warm seat ready', { lab, session: s.id, ready: list.length });
  }

  /**
   * Ends a seat and drops its disk; never throws (what is left, the next
   * sweep drops). `refill`: one of the lab as it is now takes its place at
   * once (not when the seat gave way to a student: the room is theirs).
   */
  private async discard(seat: Seat, why: string, refill = true): Promise<void> {
    for (const list of this.seats.values()) {
      const i = list.indexOf(seat);
      if (i >= 0) list.splice(i, 1);
    }
    this.log.info('warm seat discarded', { lab: seat.session.lab, why });
    try {
      await this.sessions.end(seat.session.id, why);
      this.sandboxes.dropDisk(WARM_OWNER, seat.diskName);
    } catch (err) {
      if (!(err instanceof RequestError))
        this.log.warn('discarding a warm seat', { lab: seat.session.lab, error: String(err) });
    }
    if (refill) this.fill();
  }
}

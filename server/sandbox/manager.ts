/**
 * Creating sandboxes: the named steps students study, in order, each one
 * wrapped so that its failure names it.
 *
 *   allocate-ids -> cgroup -> scratch -> idmap-lower -> overlay -> clone
 *   -> rootfs -> pivot-root -> hostname -> network -> init
 *
 * (cgroup runs while scratch's disk mounts on a worker thread: their
 * timings, reported through onStep, overlap.)
 *
 * allocate-ids, cgroup and scratch run here on the host; idmap-lower through
 * init are the op list of steps.ts, run by a fresh underlay-nsexec.
 *
 * Every resource is recorded in the store BEFORE it is created, so a crash
 * at any point leaves a record that the reaper (`reap`, or the next server
 * start) can finish tearing down.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { encodeOps, loadNative, type Native, type StepName } from '../../native/index';
import type { Config } from '../config';
import {
  RangesExhausted,
  type CheckView,
  type DiskRow,
  type SandboxRecord,
  type Store,
} from '../store/store';
import { RequestError } from '../util/errors';
import { Gate } from '../util/gate';
import { createLogger, type Logger } from '../util/logger';
import { mapInSlices, nextTurn } from '../util/wait';
import { createDriver, type CgroupDriver, type SessionCgroup } from './cgroups';
import { deviceOf, DISK_DIRS, DiskMaker, loopDevicesOf } from './disk';
import { applyDiskIo, type DiskIoRecord } from './disk-io';
import { SandboxError } from './errors';
import { Sandbox } from './handle';
import { ensureFileTable } from './host-files';
import { requireImage, shiftedImage, toolsTree, type ImageInfo } from './images';
import { resolveLimits, validateHostname, type CreateOptions, type Limits } from './options';
import { initAlive, ownerAlive, Reaper } from './reaper';
import { nsInode, processStartTime } from './proc';
import { buildOps } from './steps';

export interface ManagerOptions {
  config: Config;
  store: Store;
  driver?: CgroupDriver;
  native?: Native;
  logger?: Logger;
  /** Called with each host-side step's duration (ms); the sandbox benchmark breaks create down with it. */
  onStep?: (name: StepName, ms: number) => void;
  /**
   * Keep one helper started ahead, waiting for its op list, so a create does
   * not wait for the helper's start (~1-1.5 ms of its path here). For a
   * long-lived process (the server); off by default, because the waiting
   * helper keeps the event loop alive until dropAhead().
   */
  warmHelper?: boolean;
  /**
   * Keep one session disk ready ahead, of the size last asked for: copied
   * from its template, on a loop device and mounted (a detached mount), so a
   * fresh disk's create only moves the mount into place. For the server, as warmHelper; dropAhead()
   * releases it.
   */
  spareDisk?: boolean;
}

/** A fresh session disk made ready ahead (see ManagerOptions.spareDisk). */
interface SpareDisk {
  file: string;
  bytes: number;
  inodes: number;
  /**
   * Its mount, detached (in no mount namespace): moved into a session's
   * scratch by a create; closing the fd drops it (the loop device detaches).
   */
  mountFd: number;
  dev: string;
}

/** A helper started without its op list (see ManagerOptions.warmHelper). */
interface WarmHelper {
  done: Promise<{ initPid: number }>;
  gate: number;
  spec: number;
}

/** What create() works from: the request, validated and resolved. */
interface Plan {
  id: string;
  hostname: string;
  limits: Limits;
  image: ImageInfo;
  ownerKind: NonNullable<CreateOptions['ownerKind']>;
  keepDisk: CreateOptions['keepDisk'];
  dropParked: boolean;
}

/** The host-side directories of one sandbox (under its session dir). */
interface Scratch {
  lower: string;
  upper: string;
  work: string;
  merged: string;
  tmp: string;
  lab: string;
}

/**
 * How many creates may start their helper before their disk is mounted, in
 * this process (the libuv pool is the process's). The addon waits for a
 * helper on a pool thread, and a helper at await-scratch waits for a disk
 * mount, which needs a pool thread too: with every thread waiting on a
 * helper, no disk would ever mount (a herd of creates hung so). So two
 * threads always stay for the rest; past the bound (2 at most: more early
 * helpers only share the same CPUs), a create starts its helper once its
 * disk is mounted, as before. libuv reads UV_THREADPOOL_SIZE once, at its
 * first use, before this module is loaded.
 */
export const earlyHelpers = {
  free: Math.max(0, Math.min(2, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 2)),
};

/**
 * A kept disk, mounted at `scratch`, made fit for a new sandbox: its dirs
 * (one may predate them, or the student changed their modes) and its mount
 * points. What the student made of a mount point (a symlink, a file, a
 * whiteout) would be followed or fail when init mounts onto it, before
 * pivot_root, in a copy of the host's tree: it goes. The contents of the
 * mount points are never on the disk (the mounts cover them).
 */
function mendKeptDisk(scratch: string): void {
  for (const [d, mode] of Object.entries(DISK_DIRS)) {
    fs.mkdirSync(path.join(scratch, d), { recursive: true });
    fs.chmodSync(path.join(scratch, d), mode);
  }
  for (const name of ['proc', 'sys', 'dev', 'tmp', 'lab', 'run']) {
    const p = path.join(scratch, 'upper', name);
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (st && !st.isDirectory()) fs.rmSync(p, { force: true });
  }
}

/**
 * Reads into the caches what a create's overlay mount would otherwise read
 * from a spare disk while the helper waits (docs/benchmarks.md, twentieth
 * session: 1-4 ms of a create, blocked on the loop device): the dirs'
 * inodes and blocks, and the block and inode bitmaps that the overlay's
 * first mkdir (its `work/work`) loads. A dir made and removed leaves nothing.
 * Best effort, on the thread pool: a failure here fails nothing.
 */
async function warmDisk(root: string): Promise<void> {
  try {
    for (const d of Object.keys(DISK_DIRS)) await fs.promises.readdir(path.join(root, d));
    const probe = path.join(root, 'work', '.warm');
    await fs.promises.mkdir(probe);
    await fs.promises.rmdir(probe);
  } catch {
    // only slower
  }
}

/** Where a sandbox's host-side directories are, made or not (see makeScratch). */
function scratchPaths(sessionDir: string): Scratch & { scratch: string } {
  const scratch = path.join(sessionDir, 'scratch');
  return {
    scratch,
    lower: path.join(sessionDir, 'lower'),
    merged: path.join(sessionDir, 'merged'),
    upper: path.join(scratch, 'upper'),
    work: path.join(scratch, 'work'),
    tmp: path.join(scratch, 'tmp'),
    lab: path.join(scratch, 'lab'),
  };
}

/**
 * The server's end of a helper's scratch gate: one byte lets it past
 * await-scratch, closing without one makes it give up. Either happens once.
 */
class ScratchGate {
  private fd: number | undefined;
  constructor(fd: number) {
    this.fd = fd;
  }
  open(): void {
    this.end(true);
  }
  close(): void {
    this.end(false);
  }
  private end(go: boolean): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      if (go) fs.writeSync(fd, 'g');
    } catch {
      // EPIPE: the helper already ended; its result says why.
    } finally {
      fs.closeSync(fd);
    }
  }
}

interface StartedHelper {
  /** Resolves with the sandbox init's host pid; rejects with the helper's error. */
  done: Promise<{ initPid: number }>;
  gate: ScratchGate;
}

/** Ends a warm helper that will not get its op list: it reads an empty one and exits. */
function discardWarm(w: WarmHelper): void {
  closeQuietly(w.spec);
  closeQuietly(w.gate);
  w.done.catch(() => {});
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // closed already
  }
}

/** A failure in step `name`, as a SandboxError naming the step (unless it names one already). */
function stepError(name: StepName, id: string, err: unknown): Error {
  if (err instanceof SandboxError && err.step) return err;
  if (err instanceof RequestError) return err;
  return SandboxError.wrap(`sandbox ${id}: ${name}`, err, name);
}

/** Runs one named step; any failure in it becomes a SandboxError naming the step. */
async function step<T>(
  name: StepName,
  id: string,
  fn: () => T | Promise<T>,
  onStep?: (name: StepName, ms: number) => void,
): Promise<T> {
  const t0 = onStep ? process.hrtime.bigint() : 0n;
  try {
    return await fn();
  } catch (err) {
    throw stepError(name, id, err);
  } finally {
    if (onStep) onStep(name, Number(process.hrtime.bigint() - t0) / 1e6);
  }
}

export class SandboxManager {
  readonly config: Config;
  readonly store: Store;
  readonly driver: CgroupDriver;
  readonly native: Native;
  readonly reaper: Reaper;
  private readonly log: Logger;
  private readonly onStep: ManagerOptions['onStep'];
  private warmWanted: boolean;
  private warm: WarmHelper | undefined;
  private spareWanted: boolean;
  private spare: SpareDisk | undefined;
  private spareMaking: Promise<void> | undefined;

  constructor(opts: ManagerOptions) {
    this.config = opts.config;
    this.onStep = opts.onStep;
    this.warmWanted = opts.warmHelper ?? false;
    if (this.warmWanted) setImmediate(() => this.startWarmHelper());
    this.spareWanted = opts.spareDisk ?? false;
    this.store = opts.store;
    this.native = opts.native ?? loadNative();
    this.native.addon.initialize((props) => SandboxError.fromNative(props));
    // Orphaned sandbox inits and join helpers re-parent to us, so we can reap them.
    this.native.addon.setChildSubreaper();
    this.driver = opts.driver ?? createDriver();
    this.log = opts.logger ?? createLogger(this.config.logLevel);
    // Before any sandbox: their open files must not be able to fill the host's table.
    ensureFileTable(this.log, '/proc', this.config.keepFileMax);
    this.reaper = new Reaper({
      config: this.config,
      store: this.store,
      native: this.native,
      log: this.log,
    });
    this.diskMaker = new DiskMaker(this.disksDir(), (src, dst) =>
      this.native.addon.copySparse(src, dst, 'scratch'),
    );
  }
  private readonly diskMaker: DiskMaker;
  /** Caps what all sandboxes together may use (CgroupDriver.limitAll). */
  limitAll(total: { memoryBytes: number; pids: number }): void {
    this.driver.limitAll(total);
  }

  /** The session disks' images (root's only: a student never reaches them). */
  private disksDir(): string {
    return path.join(this.config.stateDir, 'disks');
  }

  private sessionsDir(): string {
    return path.join(this.config.stateDir, 'sessions');
  }

  async create(opts: CreateOptions = {}): Promise<Sandbox> {
    const plan = this.plan(opts);
    const releaseDisk = this.admitDisk(plan);
    const t0 = Date.now();
    // Not awaited: it only has to be under way when the helper moves the
    // sandbox into its cgroups, a few milliseconds from now.
    void this.driver.primeMigration();
    const record = await step('allocate-ids', plan.id, () => this.allocateIds(plan), this.onStep);
    // The session disk mounts on a worker thread (the slowest host step).
    // Meanwhile this thread starts the helper, which forks the child, maps
    // its ids and attaches the image, then waits at its await-scratch op
    // until the disk and the cgroups are there, and makes the cgroups: after
    // the helper's start where their layout is known ahead (v1, ten
    // hierarchies: ~1.5 ms of this thread), before it on v2 (its child is
    // born in the session cgroup). A failure of any of the three waits for
    // the others, so the teardown below never races a mount or a helper
    // still under way.
    let cgroup: Promise<SessionCgroup> | undefined;
    let helper: Promise<StartedHelper> | undefined;
    let early = false; // holds one of earlyHelperSlots until its gate is decided
    const releaseEarly = () => {
      if (early) earlyHelpers.free++;
      early = false;
      // A warm helper that found no free slot takes this one.
      if (this.warmWanted && !this.warm) setImmediate(() => this.startWarmHelper());
    };
    try {
      await step(
        'scratch',
        plan.id,
        () =>
          this.makeScratch(record, plan, () => {
            // v1: the helper makes the cgroups (its first ops); recorded now,
            // before they exist, so a teardown always knows them. Nothing
            // here may throw: the disk is being mounted, and a failure must
            // wait for that (it is awaited below, as `cgroup`).
            let ahead: SessionCgroup | undefined;
            try {
              ahead = this.driver.ahead(plan.id, plan.limits, {
                uid: record.uidBase,
                gid: record.uidBase,
              });
              if (ahead) this.recordCgroup(record, ahead);
            } catch (err) {
              cgroup = Promise.reject(stepError('cgroup', plan.id, err));
              cgroup.catch(() => {});
              return;
            }
            // A warm helper holds a slot already, which passes to this create.
            const warm = this.takeWarmHelper();
            if (warm || earlyHelpers.free > 0) {
              if (!warm) earlyHelpers.free--;
              early = true;
              if (ahead) helper = this.startHelperNow(record, plan, ahead, warm);
            }
            cgroup = ahead
              ? Promise.resolve(ahead)
              : step('cgroup', plan.id, () => this.makeCgroup(record, plan), this.onStep);
            cgroup.catch(() => {}); // awaited below, after the disk
            if (early && !ahead)
              helper = cgroup.then(
                (cg) => this.startHelper(record, plan, cg, warm),
                (err: unknown) => {
                  if (warm) discardWarm(warm); // never given its op list
                  throw err;
                },
              );
            helper?.catch(() => {}); // awaited below, after the disk
          }),
        this.onStep,
      ).finally(releaseDisk); // from here the disk counts by its own headroom
      if (!cgroup) throw new Error('makeScratch returned before making the cgroups');
      const cg = await cgroup;
      helper ??= this.startHelperNow(record, plan, cg);
      const started = await helper;
      // The disk is mounted (v2: and the cgroup exists): past await-scratch.
      started.gate.open();
      releaseEarly();
      record.resources.checkView = await step(
        'image',
        plan.id,
        () => this.checkView(plan, cg),
        this.onStep,
      );
      const { initPid } = await started.done;
      const io = this.diskIoOf(record, plan);
      await step('init', plan.id, () => this.recordInit(record, cg, initPid), this.onStep);
      // After the record names them (a teardown lifts them), before anything of the student's runs.
      if (io)
        try {
          applyDiskIo(record, io);
        } catch (err) {
          throw stepError('scratch', plan.id, err);
        }
      this.log.info('sandbox created', {
        id: plan.id,
        k: record.k,
        initPid,
        ms: Date.now() - t0,
      });
      return new Sandbox(record, this.native);
    } catch (err) {
      releaseDisk();
      await cgroup?.catch(() => {});
      const started = await helper?.catch(() => undefined);
      if (started) {
        started.gate.close(); // the helper gives up at await-scratch, if still there
        // It may have finished (a later step failed): the teardown must know
        // its init, to reap it.
        const done = await started.done.catch(() => undefined);
        if (done) record.initPid = done.initPid;
      }
      releaseEarly();
      const e =
        err instanceof SandboxError ? err : SandboxError.wrap(`create sandbox ${plan.id}`, err);
      this.log.warn('sandbox create failed', { id: plan.id, error: e.toJSON() });
      // Never throws: a cleanup that fails is quarantined and retried.
      await this.reaper.teardownOrQuarantine(record);
      throw e;
    } finally {
      // The next warm helper starts once this create is done, not during it
      // (two CPUs: it would slow this one down).
      if (this.warmWanted) setImmediate(() => this.startWarmHelper());
      if (this.spareWanted)
        setImmediate(
          () => void this.makeSpareDisk(plan.limits.scratchBytes, plan.limits.scratchInodes),
        );
    }
  }

  /**
   * Makes the spare disk (ManagerOptions.spareDisk) of this size, unless one
   * is ready or being made. Best effort: a failure only costs the next create
   * the usual path. Its file is `disks/spare-*.ext4`, mounted as a detached
   * mount whose fd the server holds: a server that dies leaves at most the
   * file (its mount and loop device go with the fd), which the first spare
   * of the next removes.
   */
  private makeSpareDisk(bytes: number, inodes: number): Promise<void> {
    if (!this.spareWanted || this.spareMaking) return this.spareMaking ?? Promise.resolve();
    if (this.spare && this.spare.bytes === bytes && this.spare.inodes === inodes)
      return Promise.resolve();
    this.spareMaking = this.makeSpare(bytes, inodes).finally(() => {
      this.spareMaking = undefined;
    });
    return this.spareMaking;
  }

  private async makeSpare(bytes: number, inodes: number): Promise<void> {
    const dir = this.disksDir();
    const file = path.join(dir, `spare-${crypto.randomBytes(6).toString('hex')}.ext4`);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (!this.spareSwept) {
        this.spareSwept = true;
        for (const f of fs.readdirSync(dir))
          if (f.startsWith('spare-')) fs.rmSync(path.join(dir, f), { force: true });
      }
      this.dropSpare(); // one of another size
      await this.diskMaker.make(file, bytes, inodes);
      const fd = Number(
        await this.diskMounts.run(() => this.native.addon.attachLoop(file, 'scratch')),
      );
      let dev: string;
      try {
        dev = fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch (err) {
        closeQuietly(fd);
        throw err;
      }
      // mountDetached closes the loop device's fd whatever the outcome.
      const mountFd = Number(
        await this.diskMounts.run(() =>
          this.native.addon.mountDetached(
            fd,
            dev,
            'ext4',
            'MS_NODEV',
            'noinit_itable,discard',
            'scratch',
          ),
        ),
      );
      if (this.spareWanted) await warmDisk(`/proc/self/fd/${mountFd}`);
      if (!this.spareWanted) {
        closeQuietly(mountFd);
        fs.rmSync(file, { force: true });
        return;
      }
      this.spare = { file, bytes, inodes, mountFd, dev };
    } catch (err) {
      this.log.warn('could not make a spare session disk', { error: String(err) });
      try {
        fs.rmSync(file, { force: true });
      } catch {
        // the orphan-image sweep removes it
      }
    }
  }

  private spareSwept = false;

  /** The spare disk if it is of this size, now the caller's; else undefined. */
  private takeSpareDisk(bytes: number, inodes: number): SpareDisk | undefined {
    const s = this.spare;
    if (!s || s.bytes !== bytes || s.inodes !== inodes) return undefined;
    this.spare = undefined;
    return s;
  }

  /** Drops the spare: its mount goes with the fd, its loop device with the mount (AUTOCLEAR). */
  private dropSpare(s = this.spare): void {
    if (s === this.spare) this.spare = undefined;
    if (!s) return;
    closeQuietly(s.mountFd);
    try {
      fs.rmSync(s.file, { force: true });
    } catch {
      // the orphan-image sweep removes it
    }
  }

  /** Whether a spare session disk is ready now (ManagerOptions.spareDisk). */
  get spareDiskReady(): boolean {
    return this.spare !== undefined;
  }

  /**
   * Starts the warm helper if wanted, none is waiting and an early-start
   * slot is free (it waits on a libuv pool thread, as an early helper does).
   */
  private startWarmHelper(): void {
    if (!this.warmWanted || this.warm || earlyHelpers.free <= 0) return;
    // It will share our cgroup: on v2 the delegation must be settled first,
    // or it would find us not alone and move us to a new systemd scope.
    this.driver.settle();
    let w: WarmHelper;
    try {
      w = this.native.addon.startSandbox(this.native.helperPath);
    } catch (err) {
      this.log.warn('could not start a helper ahead', { error: String(err) });
      return;
    }
    earlyHelpers.free--;
    this.warm = w;
    // One that ends while still warm (killed, say) gives its slot back; a
    // create that took it owns the slot and the fds from then on.
    const ended = () => {
      if (this.warm !== w) return;
      this.warm = undefined;
      closeQuietly(w.spec);
      closeQuietly(w.gate);
      earlyHelpers.free++;
    };
    w.done.then(ended, ended);
  }

  /** Whether a helper waits ahead for the next create now (ManagerOptions.warmHelper). */
  get warmHelperWaiting(): boolean {
    return this.warm !== undefined;
  }

  /** The warm helper, now the caller's (with its slot), or undefined. */
  private takeWarmHelper(): WarmHelper | undefined {
    const w = this.warm;
    this.warm = undefined;
    return w;
  }

  /**
   * Ends the warm helper (it reads an empty op list and exits), releases the
   * spare disk, and makes no more: for a clean exit of the process that
   * asked for them.
   */
  async dropAhead(): Promise<void> {
    this.warmWanted = false;
    this.spareWanted = false;
    const w = this.takeWarmHelper();
    if (w) {
      discardWarm(w);
      earlyHelpers.free++;
    }
    // One being made is dropped when it is done (spareWanted is false).
    await this.spareMaking;
    this.dropSpare();
  }

  private readonly toolsChecked = new Set<string>();

  /**
   * Removes an image's first check toolset (`tools`, ~55 MB, without the
   * libraries of `tools-2`), once per image and process, unless a sandbox's
   * check view still names it (one adopted from a server of that version:
   * its checks run from there until it ends; a later start removes it).
   */
  private dropFirstToolsTree(imageId: string): void {
    if (this.toolsChecked.has(imageId)) return;
    this.toolsChecked.add(imageId);
    const old = path.join(this.config.imagesDir, imageId, 'tools');
    const inUse = this.store
      .list()
      .some((r) => r.resources.checkView?.trees.some((t) => t.hostDir.startsWith(old + path.sep)));
    if (inUse || !fs.existsSync(old)) return;
    // Off the JS thread (tens of MB); a failure costs only the space.
    fs.rm(old, { recursive: true, force: true }, (err) => {
      if (err)
        this.log.warn('could not remove an old check toolset', { dir: old, error: String(err) });
    });
  }

  /**
   * One disk mount at a time. The mount runs off the JS thread, but a herd
   * of starts mounting several at once, each flushing through direct I/O,
   * made every start slower (herd of 100: p99 5.0-5.2 s four at a time,
   * 3.9-4.8 s in alternating runs with the mount still on the JS thread, so
   * one at a time; through this gate, the same as that within the spread).
   */
  private readonly diskMounts = new Gate(1);

  /** Disk bytes admitted for sandboxes whose disk does not exist yet. */
  private admittedBytes = 0;

  /**
   * The host disk (docs/sandbox.md#the-host-disk). Session disks are sparse:
   * they take host blocks as students write, up to their size. If the disks
   * could together outgrow the host filesystem, filling them at once would
   * fill it, and then every disk on it fails (EIO, ext4 read-only, the store
   * unable to commit). So a sandbox starts only if its disk fits in what is
   * free after what every live disk may still grow by, the disks being
   * admitted, and a reserve (UNDERLAY_DISK_RESERVE, default 5 %, >= 1 GiB).
   * Short of room, parked disks go (least recently used first) if dropping
   * them would be enough. Returns the release of this disk's admission,
   * called once the disk exists (from then on its headroom counts).
   */
  private admitDisk(plan: Plan): () => void {
    let room = this.hostDiskRoom();
    if (!room) return () => {}; // no state dir yet: nothing on it can fill it
    const need = this.diskNeed(plan);
    const short = () => need + room!.growth + this.admittedBytes + room!.reserve - room!.free;
    if (short() > 0 && plan.dropParked && this.dropParkedFor(short(), plan.keepDisk))
      room = this.hostDiskRoom()!;
    if (short() > 0) {
      const mib = (n: number) => Math.round(n / 1024 ** 2);
      // The figures are for the operator (the log, `underlay sandbox disks`);
      // the message reaches students too.
      this.log.warn('no room on the host disk for another session disk', {
        stateDir: this.config.stateDir,
        freeMiB: mib(room.free),
        liveDisks: room.live,
        liveMayTakeMiB: mib(room.growth + this.admittedBytes),
        reserveMiB: mib(room.reserve),
        needMiB: mib(need),
      });
      throw new RequestError(
        'unavailable',
        'the lab host has no disk space for another sandbox right now',
        {
          hint:
            'try again in a few minutes, or tell your instructor. Operators: `underlay sandbox disks` ' +
            'shows where the space went (docs/operating.md)',
          short: 'host-disk',
        },
      );
    }
    this.admittedBytes += need;
    let released = false;
    return () => {
      if (!released) this.admittedBytes -= need;
      released = true;
    };
  }

  /** What the host filesystem holds for session disks, now. */
  hostDiskRoom():
    | { free: number; size: number; reserve: number; growth: number; live: number }
    | undefined {
    let st: fs.StatsFs;
    try {
      st = fs.statfsSync(this.config.stateDir);
    } catch {
      return undefined;
    }
    const size = st.blocks * st.bsize;
    let growth = 0;
    let live = 0;
    for (const disk of this.store.listDiskFiles()) {
      const h = diskHeadroom(disk);
      if (h === undefined) continue;
      growth += h;
      live++;
    }
    return {
      free: st.bavail * st.bsize,
      size,
      reserve: this.config.diskReserveBytes ?? Math.max(1024 ** 3, Math.floor(size / 20)),
      growth,
      live,
    };
  }

  /** What the plan's disk may take from the host: a kept disk only its headroom. */
  private diskNeed(plan: Plan): number {
    const kept = plan.keepDisk && this.store.getDisk(plan.keepDisk.owner, plan.keepDisk.name);
    const h = kept ? diskHeadroom(path.join(this.disksDir(), `${kept.id}.ext4`)) : undefined;
    return h ?? plan.limits.scratchBytes;
  }

  /**
   * Drops parked disks, least recently used first, until `bytes` are freed;
   * none if all of them would not be enough (nobody's work is lost for
   * nothing). Never the disk the new sandbox is for.
   */
  private dropParkedFor(bytes: number, keep?: { owner: string; name: string }): boolean {
    const parked = this.disks()
      .filter((d) => !d.sandbox && !(keep && d.owner === keep.owner && d.name === keep.name))
      .sort((a, b) => a.used - b.used);
    if (parked.reduce((n, d) => n + d.usage, 0) < bytes) return false;
    let freed = 0;
    for (const d of parked) {
      if (freed >= bytes) break;
      this.log.warn('the host disk is short of room: dropping a parked disk', {
        id: d.id,
        owner: d.owner,
        bytes: d.usage,
      });
      if (this.dropDisk(d.owner, d.name)) freed += d.usage;
    }
    return true;
  }

  /** Validates the request and picks the image; nothing exists yet. */
  private plan(opts: CreateOptions): Plan {
    return {
      id: crypto.randomBytes(6).toString('hex'),
      hostname: validateHostname(opts.hostname ?? 'underlay'),
      limits: resolveLimits(opts.limits),
      image: requireImage(this.config.imagesDir, opts.packages ?? []),
      ownerKind: opts.ownerKind ?? 'cli',
      keepDisk: opts.keepDisk,
      dropParked: opts.dropParked ?? true,
    };
  }

  /** allocate-ids: an own 65536-id range, recorded before anything exists. */
  private allocateIds(plan: Plan): SandboxRecord {
    try {
      return this.reserveIds(plan);
    } catch (err) {
      // Parked disks hold ranges too: a live sandbox comes first, so a parked
      // disk goes (its owner gets a fresh start): the smallest, then the least
      // recently used, so that labs nobody worked in (~0.2 MB, what a flood
      // of made-up students leaves) go before anyone's work.
      if (!(err instanceof RangesExhausted)) throw err;
      if (!plan.dropParked)
        throw new RequestError('unavailable', 'every uid range of this server is taken', {
          hint: 'try again in a few minutes, or tell your instructor',
          short: 'id-ranges',
        });
      const lru = this.disks()
        .filter((d) => !d.sandbox)
        .sort((a, b) => a.usage - b.usage || a.used - b.used)[0];
      if (!lru) throw err;
      this.log.warn('every id range is taken: dropping the oldest parked disk', { id: lru.id });
      this.dropDisk(lru.owner, lru.name);
      return this.reserveIds(plan);
    }
  }

  private reserveIds(plan: Plan): SandboxRecord {
    const disk = plan.keepDisk && {
      ...plan.keepDisk,
      bytes: plan.limits.scratchBytes,
      id: plan.id,
    };
    return this.store.reserve(
      (k, kept) => ({
        id: plan.id,
        k,
        uidBase: this.config.uidBase + 65536 * k,
        state: 'creating',
        initPid: null,
        initStart: null,
        usernsIno: null,
        ownerPid: process.pid,
        ownerStart: processStartTime(process.pid) ?? 0,
        ownerKind: plan.ownerKind,
        hostname: plan.hostname,
        resources: {
          sessionDir: path.join(this.sessionsDir(), plan.id),
          mounts: [],
          cgroupMode: this.driver.mode,
          cgroupDirs: [],
          joinProcs: [],
          disk: path.join(this.disksDir(), `${kept?.id ?? plan.id}.ext4`),
          ...(kept ? { keptDisk: kept.id, restored: !kept.fresh && kept.ready === 1 } : {}),
        },
        createdAt: Date.now(),
      }),
      this.config.maxSessions,
      disk,
    ).record;
  }

  /** cgroup: the session's cgroups with limits, delegated to sandbox root. */
  private makeCgroup(record: SandboxRecord, plan: Plan): SessionCgroup {
    const uid = record.uidBase;
    const cg = this.driver.create(plan.id, plan.limits, { uid, gid: uid });
    this.recordCgroup(record, cg);
    return cg;
  }

  private recordCgroup(record: SandboxRecord, cg: SessionCgroup): void {
    record.resources.cgroupDirs = cg.dirs;
    record.resources.joinProcs = cg.joinProcs;
    this.store.update(record);
  }

  /**
   * The root checks and hints run in (docs/sandbox.md#trusted-checks): a
   * fresh one holding the image's pristine /usr and /etc, an execute-only
   * copy of its programs, the sandbox's own working dirs, and fresh /proc
   * and cgroup mounts. Nothing in it is a path the student can redirect.
   */
  private checkView(plan: Plan, cg: SessionCgroup): CheckView {
    const raw = plan.image.rootfs;
    const tools = toolsTree(plan.image, this.config.imagesDir);
    this.dropFirstToolsTree(plan.image.id);
    const trees = [
      // The image's /usr, readable (checks compare files with it), and the
      // execute-only programs in /usr/local, which alone are in PATH.
      { hostDir: path.join(raw, 'usr'), target: 'usr' },
      // Copies of its shared libraries (ld.so included): see toolsTree.
      ...tools.libs,
      { hostDir: tools.bin, target: 'usr/local/bin' },
      { hostDir: tools.sbin, target: 'usr/local/sbin' },
      // ld.so.preload, ld.so.cache, alternatives: the image's, not the student's.
      { hostDir: path.join(raw, 'etc'), target: 'etc' },
      // A /dev of our own: the student's /dev/null could be a file, /dev/fd a
      // link to their directory (bash reads `<(...)` through /dev/fd).
      ...['null', 'zero', 'full', 'random', 'urandom'].map((d) => ({
        hostDir: `/dev/${d}`,
        target: `dev/${d}`,
      })),
    ];
    const actions: CheckView['actions'] = [
      // Merged /usr, as in the image: the ELF interpreter is /lib64/ld-linux-x86-64.so.2.
      ...['bin', 'sbin', 'lib', 'lib64']
        .filter((d) => fs.existsSync(path.join(raw, 'usr', d)))
        .map((d) => ({ symlink: { target: `usr/${d}`, path: `/${d}` } })),
      { symlink: { target: '/proc/self/fd', path: '/dev/fd' } },
      { symlink: { target: '/proc/self/fd/0', path: '/dev/stdin' } },
      { symlink: { target: '/proc/self/fd/1', path: '/dev/stdout' } },
      { symlink: { target: '/proc/self/fd/2', path: '/dev/stderr' } },
      { mkdir: '/sys' },
      { mkdir: '/sys/fs' },
      { mkdir: '/sys/fs/cgroup' },
    ];
    for (const op of cg.initOps('')) {
      // The view's cgroup mounts are fresh mounts: a remount (read-only) has nothing to act on.
      if (op.op === 'mount' && op.flags.includes('MS_REMOUNT')) continue;
      if (op.op === 'mount')
        actions.push({
          mount: { fstype: op.fstype, source: op.source, target: op.target, data: op.data },
        });
      else if (op.op === 'mkdir') actions.push({ mkdir: op.path });
      else if (op.op === 'symlink') actions.push({ symlink: { target: op.target, path: op.path } });
    }
    // Where students work: read (and listed) as they left them. Other paths
    // of theirs are under /proc/1/root.
    const binds = [
      '/home',
      '/lab',
      '/media',
      '/mnt',
      '/opt',
      '/root',
      '/run',
      '/srv',
      '/tmp',
      '/var',
    ];
    return { trees, binds, actions };
  }

  /**
   * scratch: the session disk, an ext4 image of its own on a loop device
   * (docs/sandbox.md#the-session-disk), mounted on the host, holding the
   * root's upper and work dirs, /tmp and /lab; and the mount points.
   */
  private async makeScratch(
    record: SandboxRecord,
    plan: Plan,
    whileMounting: () => void,
  ): Promise<Scratch> {
    const { sessionDir } = record.resources;
    fs.mkdirSync(this.sessionsDir(), { recursive: true, mode: 0o711 });
    fs.mkdirSync(this.disksDir(), { recursive: true, mode: 0o700 });
    fs.chmodSync(this.config.stateDir, 0o711);
    // The sandbox's root (an unprivileged host uid) must walk to `merged`
    // for the self-bind (docs/sandbox.md#session-directories), and nobody
    // else may: the overlay is not nosuid, and its path is public in
    // /proc/mounts. So the session dir is the sandbox root's own, 0700.
    fs.mkdirSync(sessionDir, { mode: 0o700 });
    fs.chownSync(sessionDir, record.uidBase, record.uidBase);
    const { scratch, lower, merged, upper, work, tmp, lab } = scratchPaths(sessionDir);
    for (const d of [scratch, lower, merged]) fs.mkdirSync(d, { mode: 0o711 });
    const disk = record.resources.disk as string;
    record.resources.mounts = [scratch, lower, merged];
    // A kept disk comes back as it was; one whose image went missing (or a
    // new one) is made now, and then nothing is restored.
    const fresh = !record.resources.restored || !fs.existsSync(disk);
    let spare: SpareDisk | undefined;
    if (fresh) {
      record.resources.restored = false;
      fs.rmSync(disk, { force: true });
      fs.mkdirSync(this.disksDir(), { recursive: true, mode: 0o700 });
      // A spare of this size is already a copy on a loop device: it becomes
      // this disk by a rename (the device follows the file).
      spare = this.takeSpareDisk(plan.limits.scratchBytes, plan.limits.scratchInodes);
      if (spare) {
        try {
          fs.renameSync(spare.file, disk);
        } catch (err) {
          this.log.warn('could not take the spare session disk', { error: String(err) });
          this.dropSpare(spare);
          spare = undefined;
        }
      }
      if (!spare)
        await this.diskMaker.make(disk, plan.limits.scratchBytes, plan.limits.scratchInodes);
    }
    try {
      this.store.update(record);
    } catch (err) {
      // Until it is moved, the taken spare is nobody's.
      if (spare) this.dropSpare(spare);
      throw err;
    }
    // A kept disk whose last teardown had to unmount lazily may still be
    // mounted (reaper.ts quarantines that record): never mount it twice.
    // (Another create of this disk cannot be mounting it now, although the
    // mount runs off the JS thread: the store reserves a kept disk for one
    // sandbox record at a time, and that record lives until its teardown.)
    // A disk copied just now is a new inode no loop device can hold.
    const held = fresh ? [] : loopDevicesOf(disk);
    if (held.length > 0)
      throw new SandboxError(`scratch: the disk ${disk} is still mounted (${held.join(', ')})`, {
        step: 'scratch',
        code: 'EBUSY',
        path: disk,
        hint: 'its previous sandbox is still being torn down; try again in a minute',
      });
    // noinit_itable: the image is a sparse file, its inode tables read as
    // zeros already, so the kernel need not write them (16 MiB per GiB).
    // discard: a file the student deletes gives its blocks back to the host.
    // A spare is mounted already: moved into place, here (~0.1 ms).
    if (spare) {
      try {
        this.native.addon.moveMount(spare.mountFd, scratch, 'scratch');
      } finally {
        this.dropSpare(spare); // placed, the mount no longer needs its fd
      }
    }
    const mounted = spare
      ? Promise.resolve()
      : this.diskMounts.run(
          (): Promise<unknown> =>
            this.native.addon.mountLoop(
              disk,
              scratch,
              'ext4',
              'MS_NODEV',
              'noinit_itable,discard',
              'scratch',
            ),
        );
    whileMounting();
    await mounted;
    fs.chmodSync(scratch, 0o711);
    // A fresh disk is its template's copy: the dirs are there with their
    // modes, nothing else is (each lookup here is a first read through the
    // new loop device: ~0.5 ms skipped per create).
    if (!fresh) mendKeptDisk(scratch);
    // The upper dir's owner becomes the owner of `/` inside: sandbox root.
    for (const d of [upper, tmp, lab]) fs.chownSync(d, record.uidBase, record.uidBase);
    return { lower, upper, work, merged, tmp, lab };
  }

  /** startHelper as a promise, its synchronous failure a rejection. */
  private startHelperNow(
    record: SandboxRecord,
    plan: Plan,
    cg: SessionCgroup,
    warm?: WarmHelper,
  ): Promise<StartedHelper> {
    try {
      return Promise.resolve(this.startHelper(record, plan, cg, warm));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /**
   * idmap-lower .. init: the op list, run by a fresh helper, started before
   * the session disk is mounted (and, v1, before the cgroups are made: `cg`
   * may be their layout only). It waits at await-scratch for `gate.open()`;
   * `done` resolves with the init's pid. Synchronous up to the spawn, so a
   * caller's next step (the v1 cgroups) runs while the helper starts.
   */
  private startHelper(
    record: SandboxRecord,
    plan: Plan,
    cg: SessionCgroup,
    warm?: WarmHelper,
  ): StartedHelper {
    let spec: Buffer;
    try {
      const uid = record.uidBase;
      const dirs = scratchPaths(record.resources.sessionDir);
      const t0 = process.hrtime.bigint();
      let imageRoot: string;
      try {
        imageRoot = this.config.idmap
          ? plan.image.rootfs
          : shiftedImage(plan.image, this.config.imagesDir, uid);
      } catch (err) {
        throw stepError('idmap-lower', plan.id, err);
      } finally {
        this.onStep?.('idmap-lower', Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const ops = buildOps({
        uidBase: uid,
        gidBase: uid,
        hostname: plan.hostname,
        imageRoot,
        idmap: this.config.idmap,
        lowerDir: dirs.lower,
        upperDir: dirs.upper,
        workDir: dirs.work,
        mergedDir: dirs.merged,
        cgroup: cg,
        tmpDir: dirs.tmp,
        labDir: dirs.lab,
        shmBytes: plan.limits.shmBytes,
        runBytes: plan.limits.runBytes,
        shmInodes: plan.limits.shmInodes,
        runInodes: plan.limits.runInodes,
      });
      spec = encodeOps(ops);
    } catch (err) {
      if (warm) discardWarm(warm); // never given its op list
      throw err;
    }
    // Errors from the helper already name the op's step.
    const t1 = process.hrtime.bigint();
    let started: { done: Promise<{ initPid: number }>; gate: number } | undefined;
    if (warm) {
      // Its stdin is a pipe with room for far more than a spec (a few KiB),
      // so this write does not block, read or not.
      try {
        if (fs.writeSync(warm.spec, spec) !== spec.length) throw new Error('short write');
        closeQuietly(warm.spec);
        started = warm;
      } catch (err) {
        // It ended meanwhile (EPIPE): start one the usual way.
        this.log.warn('the helper started ahead was gone', { error: String(err) });
        discardWarm(warm);
      }
    }
    try {
      started ??= this.native.addon.startSandbox(this.native.helperPath, spec);
    } catch (err) {
      throw stepError('clone', plan.id, err);
    }
    const done = started.done.then(
      (r) => {
        this.onStep?.('clone', Number(process.hrtime.bigint() - t1) / 1e6);
        return r;
      },
      (err: unknown) => {
        this.onStep?.('clone', Number(process.hrtime.bigint() - t1) / 1e6);
        throw stepError('clone', plan.id, err);
      },
    );
    done.catch(() => {}); // awaited by create, after the disk
    return { done, gate: new ScratchGate(started.gate) };
  }

  /** init: the sandbox runs; record who it is so a later start can re-adopt or reap it. */
  /** The session disk's I/O limits, into the record (docs/sandbox.md#disk-bandwidth). */
  private diskIoOf(record: SandboxRecord, plan: Plan): DiskIoRecord | undefined {
    const scratch = path.join(record.resources.sessionDir, 'scratch');
    let dev: string;
    try {
      dev = deviceOf(scratch);
    } catch (err) {
      throw stepError('scratch', plan.id, err);
    }
    const { diskBps: bps, diskIops: iops, memoryBytes } = plan.limits;
    // Twice the rate may be dirty at once (a lab's copy of a few MiB is
    // never paced), at most a quarter of the memory limit it is charged to.
    const dirtyBytes = Math.min(2 * bps, Math.floor(memoryBytes / 4));
    record.resources.diskIo = { dev, bps, iops, dirtyBytes };
    return record.resources.diskIo;
  }

  private recordInit(record: SandboxRecord, cg: SessionCgroup, initPid: number): void {
    record.initPid = initPid;
    cg.afterStart();
    record.initStart = processStartTime(initPid) ?? null;
    record.usernsIno = nsInode(initPid, 'user');
    record.state = 'ready';
    this.store.update(record);
  }

  private record(id: string): SandboxRecord {
    const r = this.store.get(id);
    if (!r)
      throw new RequestError('not-found', `no sandbox with id ${JSON.stringify(id)}`, {
        hint: 'list them with `underlay sandbox ls`',
      });
    return r;
  }

  get(id: string): Sandbox {
    return new Sandbox(this.record(id), this.native);
  }

  list(): (SandboxRecord & { alive: boolean; ownerAlive: boolean })[] {
    return this.store.list().map((r) => ({ ...r, alive: initAlive(r), ownerAlive: ownerAlive(r) }));
  }

  /** Tears down one sandbox by id (everything in it dies). */
  async destroy(id: string): Promise<void> {
    const r = this.record(id);
    // Its creator is still mounting and cloning (off the JS thread, too):
    // a teardown now would race it and could leave mounts behind.
    if (r.state === 'creating' && r.ownerPid !== process.pid && ownerAlive(r))
      throw new SandboxError(`sandbox ${id} is still being created by process ${r.ownerPid}`, {
        step: 'teardown',
        code: 'EBUSY',
        hint: 'try again once it is up; if that process is stuck, stop it (its next start, or `underlay sandbox reap`, tears down what it left)',
      });
    await this.reaper.teardown(r);
  }

  /** Tears down a sandbox this caller holds. */
  teardown(sb: Sandbox | SandboxRecord): Promise<void> {
    return this.reaper.teardown(sb instanceof Sandbox ? sb.record : sb);
  }

  /**
   * Reaps sandbox processes that ended up as this process's zombie children
   * (see Reaper.collectZombies): a killed join helper's command is
   * re-parented to us, the subreaper. Call after killing anything of a
   * sandbox; serve also sweeps now and then.
   */
  collectZombies(): Promise<number> {
    return this.reaper.collectZombies();
  }

  /** Teardown that never throws: a failure quarantines the record for a retry (see Reaper). */
  teardownOrQuarantine(sb: Sandbox): Promise<boolean> {
    return this.reaper.teardownOrQuarantine(sb.record);
  }

  /** Detaches a sandbox from its creator: only `sandbox rm` (or `reap --all`) removes it. */
  detach(sb: Sandbox): void {
    sb.record.ownerKind = 'detached';
    this.store.update(sb.record);
  }

  /** Sandboxes whose owner is gone (or all of them): see Reaper.reap. */
  reap(opts: { all?: boolean } = {}): Promise<{ reaped: string[]; failed: string[] }> {
    return this.reaper.reap(opts);
  }

  /** Server start: re-adopt what a previous server left running, reap the rest. */
  adoptOrReap(): Promise<{ adopted: string[]; reaped: string[]; quarantined: string[] }> {
    return this.reaper.adoptOrReap();
  }

  /** Retry the teardown of quarantined sandboxes; returns those still stuck. */
  retryQuarantined(): Promise<string[]> {
    return this.reaper.retryQuarantined();
  }

  /**
   * The sandbox's kept disk now holds a complete start (the lab's setup
   * ran): a later sandbox on it restores the files instead of setting up.
   */
  markDiskReady(sb: Sandbox): void {
    if (sb.record.resources.keptDisk) this.store.markDiskReady(sb.record.resources.keptDisk);
  }

  /**
   * Kept disks (docs/sandbox.md#kept-disks): owner, name, the host disk the
   * image really takes (it is sparse), and the sandbox using it, if any
   * (none: parked).
   */
  disks(): (DiskRow & { usage: number; sandbox: string | undefined })[] {
    return this.diskRows().map(({ file, ...d }) => ({ ...d, usage: diskUsage(file) }));
  }

  /** The kept disks' rows, their image files and who uses them; no file is read. */
  private diskRows(): (DiskRow & { file: string; sandbox: string | undefined })[] {
    const byK = new Map(this.store.listKeys().map((r) => [r.k, r.id]));
    return this.store.listDisks().map((d) => ({
      ...d,
      file: path.join(this.disksDir(), `${d.id}.ext4`),
      sandbox: byK.get(d.k),
    }));
  }

  /** diskRows, a page at a time with the event loop turning between pages; by `used`. */
  private async diskRowsInSlices(): Promise<ReturnType<SandboxManager['diskRows']>> {
    const byK = new Map(this.store.listKeys().map((r) => [r.k, r.id]));
    const out: ReturnType<SandboxManager['diskRows']> = [];
    const PAGE = 256;
    let after = 0;
    for (;;) {
      const page = this.store.listDisksPage(after, PAGE);
      for (const { rowid, ...d } of page) {
        out.push({ ...d, file: path.join(this.disksDir(), `${d.id}.ext4`), sandbox: byK.get(d.k) });
        after = rowid;
      }
      if (page.length < PAGE) break;
      await nextTurn();
    }
    return out.sort((a, b) => a.used - b.used);
  }

  /** Forgets a kept disk and its files; refused while a sandbox uses it. */
  dropDisk(owner: string, name: string): boolean {
    const d = this.store.getDisk(owner, name);
    if (!d) return false;
    const user = this.store.listKeys().find((r) => r.k === d.k);
    if (user) throw new RequestError('conflict', `the disk is in use by sandbox ${user.id}`);
    fs.rmSync(path.join(this.disksDir(), `${d.id}.ext4`), { force: true });
    this.store.removeDisk(d.id);
    this.log.info('disk dropped', { owner, name, id: d.id });
    return true;
  }

  /**
   * Drops parked disks: those unused for longer than `maxIdleMs`, then the
   * least recently used ones while an owner's disks take more than
   * `perOwnerBytes`, or all of them more than `totalBytes` (real usage, not
   * the sparse size). Disks in use are never dropped; they count, though.
   */
  async collectDisks(policy: {
    maxIdleMs: number;
    perOwnerBytes: number;
    totalBytes: number;
  }): Promise<string[]> {
    // One pass per rule over the list, oldest first (listDisks orders by
    // `used`): a term's class keeps thousands of disks and this runs every
    // 30 s. A quadratic first version stalled every keystroke's echo for 0.4
    // s at 1,100 disks (bench:class); reading the images' sizes on the event
    // loop in one go still held it 18 ms at 800 disks: a slice at a time.
    const rows = await this.diskRowsInSlices();
    const usages = await mapInSlices(rows, (d) => diskUsage(d.file));
    const all = rows.map((d, i) => ({ ...d, usage: usages[i] ?? 0 }));
    const dropped: string[] = [];
    const byOwner = new Map<string, number>();
    let total = 0;
    for (const d of all) {
      byOwner.set(d.owner, (byOwner.get(d.owner) ?? 0) + d.usage);
      total += d.usage;
    }
    const drop = (d: (typeof all)[number]) => {
      // The rows were read before the yields: the same disk, unused since?
      const fresh = this.store.getDisk(d.owner, d.name);
      if (fresh?.id !== d.id || fresh.used !== d.used) return;
      try {
        if (this.dropDisk(d.owner, d.name)) dropped.push(d.id);
      } catch (err) {
        // Taken by a sandbox while the sizes were read: in use, so kept.
        if (!(err instanceof RequestError)) throw err;
        d.sandbox = 'taken';
        return;
      }
      byOwner.set(d.owner, (byOwner.get(d.owner) ?? 0) - d.usage);
      total -= d.usage;
      d.usage = 0;
    };
    const now = Date.now();
    for (const d of all) if (!d.sandbox && now - d.used > policy.maxIdleMs) drop(d);
    for (const d of all) {
      if (d.sandbox || d.usage === 0) continue;
      if ((byOwner.get(d.owner) ?? 0) > policy.perOwnerBytes) drop(d);
    }
    for (const d of all) {
      if (total <= policy.totalBytes) break;
      if (!d.sandbox && d.usage > 0) drop(d);
    }
    if (dropped.length) this.log.info('parked disks collected', { dropped: dropped.length });
    return dropped;
  }
}

/** How much more a (sparse) disk image may take on the host; undefined if it is gone. */
function diskHeadroom(file: string | undefined): number | undefined {
  if (!file) return undefined;
  try {
    const st = fs.statSync(file);
    return Math.max(0, st.size - st.blocks * 512);
  } catch {
    return undefined;
  }
}

/** Bytes a (sparse) file really takes on the host disk; 0 if it is gone. */
function diskUsage(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

/** Whether the native module is built and loadable (for `underlay doctor`). */
export function nativeStatus(): { ok: boolean; detail: string } {
  try {
    return { ok: true, detail: loadNative().helperPath };
  } catch (err) {
    return { ok: false, detail: (err as Error).message };
  }
}

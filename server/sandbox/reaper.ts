/**
 * Ending sandboxes: teardown of one record, reaping what crashed owners left,
 * re-adopting a previous server's sandboxes, and collecting our zombies.
 *
 * Teardown is record-driven, idempotent and runs in reverse creation order:
 * kill (cgroup) -> init -> disk limits -> unmount -> scratch files -> cgroup dirs -> id range.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Native } from '../../native/index';
import type { Config } from '../config';
import type { SandboxRecord, Store } from '../store/store';
import type { Logger } from '../util/logger';
import { mapInSlices, pollUntil } from '../util/wait';
import { killCgroups, removeCgroupTrees } from './cgroups';
import { loopDevicesOf, templateIsCurrent } from './disk';
import { applyDiskIo, liftDiskIo } from './disk-io';
import { SandboxError } from './errors';
import { ownSpawns } from './handle';
import { childPids, procAlive, processStartTime, readStat } from './proc';

export function initAlive(r: SandboxRecord): boolean {
  return procAlive(r.initPid, r.initStart);
}

export function ownerAlive(r: SandboxRecord): boolean {
  return procAlive(r.ownerPid, r.ownerStart);
}

export interface ReaperOptions {
  config: Config;
  store: Store;
  native: Native;
  log: Logger;
}

export class Reaper {
  constructor(private readonly o: ReaperOptions) {}

  private sessionsDir(): string {
    return path.join(this.o.config.stateDir, 'sessions');
  }

  /** Idempotent, reverse-order teardown of everything the record names. */
  async teardown(r: SandboxRecord): Promise<void> {
    const t0 = Date.now();
    const { store } = this.o;
    const { addon } = this.o.native;
    r.state = 'destroying';
    // Best effort: a full host disk (SQLITE_FULL) must not stop the kill.
    try {
      if (store.get(r.id)) store.update(r);
    } catch (err) {
      this.o.log.error('teardown: the store could not record it', { id: r.id, error: String(err) });
    }
    // 1. every process of the session, through its cgroups
    await killCgroups(r.resources.cgroupMode, r.resources.cgroupDirs);
    // 2. the init (normally already dying: it is in the cgroup too). A dying
    // pid-namespace init waits until every task of its namespace is reaped,
    // and the commands of killed join helpers were re-parented to us (the
    // subreaper): reap those, then the init itself if it is ours. Polled,
    // never a blocking wait on the event loop.
    if (r.initPid !== null) {
      if (initAlive(r)) {
        let fd = -1;
        try {
          fd = addon.pidfdOpen(r.initPid);
          addon.pidfdSignal(fd, 9);
        } catch (err) {
          if ((err as SandboxError).code !== 'ESRCH') throw err;
        } finally {
          if (fd >= 0) addon.closeFd(fd);
        }
      }
      const initPid = r.initPid;
      let polls = 0;
      await pollUntil(() => {
        // Identity first: a stale record's pid may now be another process,
        // even a helper libuv or a PipedProcess is about to reap.
        const st = readStat(initPid);
        if (!st || st.start !== r.initStart) return true; // gone
        if (st.state === 'Z') {
          if (st.ppid === process.pid && !ownSpawns.has(initPid)) addon.reapChild(initPid);
          return true; // reaped, or its own parent reaps it
        }
        // Still exiting: it may be waiting for killed terminals' shells that
        // were re-parented to us. Sweeping reads every child of ours (every
        // other sandbox's init too), so not on the first checks, which
        // usually find it dead already.
        if (++polls > 2)
          this.collectZombies().catch((err) =>
            this.o.log.error('collecting zombies', { error: String(err) }),
          );
        return false;
      }, 5000);
    }
    // 3. the disk's I/O limits, or the unmount's writeback crawls at them
    try {
      liftDiskIo(r);
    } catch (err) {
      // Only slower: the unmount writes back at the student's rate.
      this.o.log.warn('teardown: could not lift the disk limits', { id: r.id, error: String(err) });
    }
    // 4. host mounts, innermost first
    let unsure = false; // a mount detached lazily, or already gone (a crash, a reboot)
    for (const m of [...r.resources.mounts].reverse()) {
      try {
        await addon.umount(m, false, 'teardown');
      } catch (err) {
        const code = (err as SandboxError).code;
        unsure = true;
        if (code === 'EINVAL' || code === 'ENOENT') continue; // not (or no longer) mounted
        if (code === 'EBUSY') {
          await addon.umount(m, true, 'teardown');
          continue;
        }
        throw err;
      }
    }
    // A lazily unmounted disk still held on the host (a process with a file
    // open in it) keeps its loop device and ext4 instance alive: releasing the
    // record now would let a kept disk be mounted twice (and corrupted), or
    // leak a deleted image's space. Quarantined until released; retried.
    // (Only then: reading every loop device per teardown starved 50 parallel ones.)
    if (r.resources.disk && unsure) {
      let held = loopDevicesOf(r.resources.disk);
      for (let i = 0; i < 20 && held.length > 0; i++) {
        await new Promise((res) => setTimeout(res, 50));
        held = loopDevicesOf(r.resources.disk);
      }
      if (held.length > 0)
        throw new SandboxError(
          `teardown: the session disk is still in use on the host (${held.join(', ')}): ` +
            'a host process has a file or directory open inside it',
          {
            step: 'teardown',
            code: 'EBUSY',
            path: r.resources.disk,
            hint: `find it with: fuser -vm ${held[0]} (it is retried until released)`,
          },
        );
    }
    // 5. files; the disk's loop device went with its mount (AUTOCLEAR)
    const sessionDir = r.resources.sessionDir;
    if (sessionDir.startsWith(this.sessionsDir() + path.sep)) {
      fs.rmSync(sessionDir, { recursive: true, force: true });
    }
    // A kept disk (a student's lab files) stays for the next sandbox.
    const disk = r.resources.disk;
    if (r.resources.keptDisk) {
      store.touchDisk(r.resources.keptDisk);
    } else if (disk && path.dirname(disk) === path.join(this.o.config.stateDir, 'disks')) {
      // Off the teardown's path (freeing its extents takes 2-3 ms): nothing
      // reaches the file any more, and a server start sweeps orphans.
      fs.rm(disk, { force: true }, () => {});
    }
    // 6. cgroup dirs (student-made children included)
    await removeCgroupTrees(r.resources.cgroupDirs);
    // 7. the id range
    store.remove(r.id);
    this.o.log.info('sandbox destroyed', { id: r.id, ms: Date.now() - t0 });
  }

  /** Ids whose teardown is running now, so a retry never races it. */
  private readonly inFlight = new Set<string>();

  /**
   * Teardown that never throws: a failure is logged and the record is
   * quarantined (kept in 'destroying' with the count and the error) for a
   * later retry. One sandbox that cannot be torn down must never stop the
   * reaping of the others, nor a server start.
   */
  async teardownOrQuarantine(r: SandboxRecord): Promise<boolean> {
    if (this.inFlight.has(r.id)) return false;
    this.inFlight.add(r.id);
    try {
      await this.teardown(r);
      return true;
    } catch (err) {
      const rec = this.o.store.get(r.id) ?? r;
      rec.state = 'destroying';
      rec.failures = (rec.failures ?? 0) + 1;
      rec.lastError = err instanceof Error ? err.message : String(err);
      try {
        if (this.o.store.get(r.id)) this.o.store.update(rec);
      } catch (e) {
        // The store itself failing (a full disk) must not make this throw.
        this.o.log.error('quarantine: the store could not record it', {
          id: r.id,
          error: String(e),
        });
      }
      this.o.log.error('teardown failed: sandbox quarantined, will retry', {
        id: r.id,
        failures: rec.failures,
        error: rec.lastError,
      });
      return false;
    } finally {
      this.inFlight.delete(r.id);
    }
  }

  /**
   * Tears down what a crashed CLI or server left: sandboxes whose owner
   * process is gone. With `all`, every sandbox in this state dir. Failures
   * are quarantined and listed, never thrown.
   */
  async reap(opts: { all?: boolean } = {}): Promise<{ reaped: string[]; failed: string[] }> {
    const reaped: string[] = [];
    const failed: string[] = [];
    for (const r of this.o.store.list()) {
      if (!opts.all && r.ownerKind === 'detached') continue;
      if (!opts.all && ownerAlive(r) && r.ownerPid !== process.pid) continue;
      if (await this.teardownOrQuarantine(r)) reaped.push(r.id);
      else failed.push(r.id);
    }
    await this.collectZombies();
    return { reaped, failed };
  }

  /**
   * Server start: a server-owned sandbox whose init still lives is adopted
   * (ownership moves to this process); anything else orphaned is reaped. A
   * sandbox that cannot be torn down is quarantined and reported, and the
   * start goes on.
   */
  async adoptOrReap(): Promise<{ adopted: string[]; reaped: string[]; quarantined: string[] }> {
    const { store } = this.o;
    const adopted: string[] = [];
    const reaped: string[] = [];
    const quarantined: string[] = [];
    for (const r of store.list()) {
      if (r.ownerKind === 'detached') continue;
      if (ownerAlive(r) && r.ownerPid !== process.pid) continue;
      if (r.ownerKind === 'server' && r.state === 'ready' && initAlive(r)) {
        r.ownerPid = process.pid;
        r.ownerStart = processStartTime(process.pid) ?? 0;
        store.update(r);
        // The dead server may have recorded them and died before setting them.
        if (r.resources.diskIo) {
          try {
            applyDiskIo(r, r.resources.diskIo);
          } catch (err) {
            this.o.log.warn('adopted sandbox: could not set its disk limits', {
              id: r.id,
              error: String(err),
            });
          }
        }
        adopted.push(r.id);
      } else if (await this.teardownOrQuarantine(r)) {
        reaped.push(r.id);
      } else {
        quarantined.push(r.id);
      }
    }
    await this.collectZombies();
    this.sweepDisks();
    return { adopted, reaped, quarantined };
  }

  /**
   * Removes disk images no sandbox record and no kept disk names (a crash
   * between a teardown and its removal of the image), and spares of an older
   * version.
   * Only images older than a minute: another process may be creating one.
   */
  sweepDisks(): void {
    const dir = path.join(this.o.config.stateDir, 'disks');
    if (!fs.existsSync(dir)) return;
    const named = new Set<string>();
    for (const r of this.o.store.list())
      if (r.resources.disk) named.add(path.basename(r.resources.disk));
    for (const d of this.o.store.listDisks()) named.add(`${d.id}.ext4`);
    for (const f of fs.readdirSync(dir)) {
      // Templates are DiskMaker's; a `.tmp-` file is a template being made
      // (or one a crash cut short: removed once old).
      // Those of an older recipe are never used again.
      if (f.startsWith('template-') && !f.includes('.tmp-') && templateIsCurrent(f)) continue;
      if (!f.includes('.ext4') || named.has(f)) continue;
      // A live server's spare disk is on its loop device (a dead server's
      // was detached with its fd): docs/sandbox.md#the-session-disk.
      if (f.startsWith('spare-') && loopDevicesOf(path.join(dir, f)).length > 0) continue;
      try {
        if (Date.now() - fs.statSync(path.join(dir, f)).mtimeMs < 60_000) continue;
        // recursive: a crashed mke2fs leaves its `.dirs-` staging dir
        fs.rmSync(path.join(dir, f), { force: true, recursive: true });
        this.o.log.info('orphan disk image removed', { file: f });
      } catch {
        // gone meanwhile
      }
    }
  }

  /**
   * Retries quarantined records this process may end (owner gone, or us):
   * what a long-running server calls now and then. Returns what is still stuck.
   */
  async retryQuarantined(): Promise<string[]> {
    const stuck: string[] = [];
    for (const r of this.o.store.listQuarantined()) {
      if (!r.failures || r.state !== 'destroying') continue;
      if (ownerAlive(r) && r.ownerPid !== process.pid) continue;
      if (!(await this.teardownOrQuarantine(r))) stuck.push(r.id);
    }
    if (stuck.length === 0) await this.collectZombies();
    return stuck;
  }

  /**
   * Reaps sandbox processes that ended up as OUR zombie children: as a
   * subreaper we inherit the init and the join relays of any sandbox whose
   * creator (a CLI run) was killed. A dying pid-namespace init waits until
   * every task of its namespace is reaped, including children of such a
   * zombie relay, so this also unblocks teardown. Only specific pids running
   * as a sandbox uid that we did not spawn ourselves; never waitpid(-1).
   */
  collectZombies(): Promise<number> {
    if (!this.sweep) {
      this.sweep = this.sweepOnce().finally(() => (this.sweep = undefined));
      return this.sweep;
    }
    // A sweep under way may have read a child before it died: one more after
    // it, whatever became of that one.
    const again = () => {
      this.nextSweep = undefined;
      return this.collectZombies();
    };
    this.nextSweep ??= this.sweep.then(again, again);
    return this.nextSweep;
  }

  private sweep: Promise<number> | undefined;
  private nextSweep: Promise<number> | undefined;
  private readonly collectLater = () =>
    void this.collectZombies().catch((err) =>
      this.o.log.error('collecting zombies', { error: String(err) }),
    );

  private async sweepOnce(): Promise<number> {
    const lo = this.o.config.uidBase;
    const hi = lo + 65536 * this.o.config.maxSessions;
    // A spawn under way may have a child whose pid its owner does not know
    // yet (PipedProcess): nothing here can tell it apart. Done once none is
    // (not awaited: a spawn that never settles must not hold its callers).
    if (ownSpawns.pending) {
      ownSpawns.whenSettled(this.collectLater);
      return 0;
    }
    // Only our own children can be ours to reap: the kernel lists them per
    // thread (a subreaper's re-parented children may land on any thread).
    // Read a slice at a time: a class's server has hundreds of children, and
    // reading them all at once held every terminal's echo for 10-30 ms
    // (bench:class), every 30 s and after every session's end.
    const children = childPids().filter((pid) => !ownSpawns.has(pid));
    const states = await mapInSlices(children, readStat);
    const zombies = children.filter((_, i) => states[i]?.state === 'Z');
    if (zombies.length === 0) return 0;
    // The decision is made again, synchronously, right before each reap: a
    // spawn may have begun while the states were read.
    if (ownSpawns.pending) {
      ownSpawns.whenSettled(this.collectLater);
      return 0;
    }
    let n = 0;
    for (const pid of zombies) {
      if (ownSpawns.has(pid)) continue;
      try {
        const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        const state = /^State:\s+(\S)/m.exec(status)?.[1];
        const ppid = Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
        const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
        if (state === 'Z' && ppid === process.pid && uid >= lo && uid < hi) {
          if (this.o.native.addon.reapChild(pid)) n++;
        }
      } catch {
        // gone meanwhile
      }
    }
    return n;
  }
}

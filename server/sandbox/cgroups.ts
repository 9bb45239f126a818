/**
 * cgroup policy for sandboxes, for both cgroup versions.
 *
 * Where: always below the creating process's own cgroup (read from
 * /proc/self/cgroup), as `<own>/underlay/<sandbox id>`, the way a systemd
 * service with Delegate=yes owns its subtree. Nothing is ever created beside
 * our own cgroup.
 *
 * Delegation (docs/sandbox.md#cgroup-delegation): the session root may create children and move
 * its own processes, never raise its own limits. So only the directory and
 * the delegation files (cgroup.procs, tasks / cgroup.threads,
 * cgroup.subtree_control) are chowned to the session's root; the limit files
 * stay owned by host root.
 *
 * v2 "no internal processes": a cgroup with controllers enabled in
 * cgroup.subtree_control cannot hold processes. The sandbox therefore lives in
 * a leaf `<session>/init`, which leaves `<session>` free for the student to
 * enable controllers and create siblings such as `lab` (the cpu.max lab).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Op, StepName } from '../../native/index';
import { timeScale } from '../config';
import type { SandboxResources } from '../store/store';
import { pollUntil } from '../util/wait';
import { SandboxError } from './errors';
import { mount, NOSUID_NODEV_NOEXEC } from './ops';
import { FIXED_MOUNT_INODES } from './options';

export type CgroupMode = 'v1' | 'v2';

export interface CgroupLimits {
  memoryBytes: number;
  pids: number;
  /** CPUs worth of bandwidth (1 = 100000us per 100000us). */
  cpus: number;
}

export interface SessionCgroup {
  mode: CgroupMode;
  /** Every session dir created, in creation order (torn down in reverse). */
  dirs: string[];
  /** cgroup.procs files the new user-namespace child is written into before it unshares. */
  attachProcs: string[];
  /**
   * v2: the cgroup dir the child is born in (clone3 CLONE_INTO_CGROUP): no
   * migration, so no wait for the cgroup_threadgroup_rwsem writer's RCU
   * grace period. v1 has nothing like it (one cgroup per hierarchy).
   */
  cloneInto?: string;
  /** v2: the cgroup dir the sandbox init is born in (its leaf), the same way. */
  initInto?: string;
  /**
   * The files a joining terminal/check writes itself into ("0": the writer).
   * v1: each hierarchy's `tasks`, which moves only the writing thread (the
   * join helper has one), so the kernel (6.1 and later) skips the write side
   * of cgroup_threadgroup_rwsem that a cgroup.procs write takes; that write
   * waits for every fork in progress on the host, and with fork bombs
   * running a join waited seconds per hierarchy (docs/sandbox.md#joining-a-sandbox).
   * v2 (and v1's unified hierarchy): cgroup.procs; `cgroup.threads` takes
   * only threaded cgroups.
   */
  joinProcs: string[];
  /** Ops for the sandbox init: leaf move (v2) and cgroupfs mounts under `root`. */
  initOps(root: string): Op[];
  /** Runs once the sandbox init is in place (v2: enable controllers on the emptied session cgroup). */
  afterStart(): void;
  /**
   * v1 (CgroupDriver.ahead): the ops that make these cgroups, run by the
   * helper before anything else; absent when create() made them.
   */
  makeOps?: Op[];
}

const CGROUP2_MAGIC = 0x63677270;
const PERIOD_US = 100000;

/**
 * How many cgroups a session may hold below its own (the `init` leaf and the
 * terminals' cgroups included), and how deep. Every cgroup costs kernel
 * memory the session is barely charged for, and memory cgroups share a
 * 16-bit id space host-wide: unbounded, two default sandboxes could use it
 * up and no one on the host could create a memory cgroup. v2 enforces these
 * through cgroup.max.descendants / cgroup.max.depth, which stay host-owned.
 */
export const MAX_DESCENDANTS = 128;
export const MAX_DEPTH = 8;

export function detectCgroupMode(mountPoint = '/sys/fs/cgroup'): CgroupMode {
  const st = fs.statfsSync(mountPoint);
  return st.type === CGROUP2_MAGIC ? 'v2' : 'v1';
}

interface V1Hierarchy {
  /** e.g. "cpu" or "cpu,cpuacct" or "name=systemd" */
  key: string;
  controllers: string[];
  mountPoint: string;
  /** Which cgroup of the hierarchy the mount shows at mountPoint: "/" unless a container's view. */
  mountRoot: string;
  /** our own cgroup path in this hierarchy */
  own: string;
}

/** Parses /proc/self/mountinfo + /proc/self/cgroup into the v1 hierarchies we can use. */
export function v1Hierarchies(
  mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8'),
  selfCgroup = fs.readFileSync('/proc/self/cgroup', 'utf8'),
): V1Hierarchy[] {
  const own = new Map<string, string>();
  for (const line of selfCgroup.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m && m[2]) own.set(m[2], m[3] ?? '/');
  }
  // Mount options mix controllers with flags (rw, xattr, clone_children,
  // release_agent=...): keep only names /proc/self/cgroup knows.
  const names = new Set([...own.keys()].flatMap((k) => k.split(',')));
  const out: V1Hierarchy[] = [];
  for (const line of mountinfo.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    if (fstype !== 'cgroup') continue;
    const fields = line.split(' ');
    const mountPoint = fields[4] ?? '';
    const controllers = superOpts.split(',').filter((o) => names.has(o));
    // /proc/self/cgroup lists controllers in the kernel's order; match as sets.
    const key = [...own.keys()].find(
      (k) => k.split(',').sort().join(',') === [...controllers].sort().join(','),
    );
    if (!key) continue;
    out.push({
      key,
      controllers,
      mountPoint,
      mountRoot: fields[3] ?? '/',
      own: own.get(key) ?? '/',
    });
  }
  return out;
}

/** Controllers whose limits we set and that the student may use (mounted inside). */
const V1_DELEGATED = new Set(['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'cpuset']);

function write(file: string, value: string, step: StepName = 'cgroup'): void {
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    throw SandboxError.wrap(`write ${JSON.stringify(value)} to ${file}`, err, step);
  }
}

function chown(p: string, uid: number, gid: number): void {
  try {
    fs.chownSync(p, uid, gid);
  } catch (err) {
    throw SandboxError.wrap(`chown ${p}`, err, 'cgroup');
  }
}

function mkdirOnce(p: string): boolean {
  try {
    fs.mkdirSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw SandboxError.wrap(`mkdir ${p}`, err, 'cgroup');
  }
}

/** cpuset children start with empty cpus/mems and then refuse tasks: copy the parent's. */
function initCpuset(dir: string): void {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const mine = path.join(dir, f);
    if (!fs.existsSync(mine) || fs.readFileSync(mine, 'utf8').trim() !== '') continue;
    write(mine, fs.readFileSync(path.join(path.dirname(dir), f), 'utf8').trim() || '0');
  }
}

export interface CgroupDriver {
  readonly mode: CgroupMode;
  /** Creates the session's cgroups with limits, delegated to `owner`. */
  create(id: string, limits: CgroupLimits, owner: { uid: number; gid: number }): SessionCgroup;
  /**
   * What create() would make, as a layout whose `makeOps` make it: the
   * helper runs them (syscalls, ~0.2 ms) where create() costs the JS thread
   * ~1.5 ms (v1: ten hierarchies, ~40 files). Undefined where the helper
   * needs the cgroups before it starts (v2: its child is born in the session
   * cgroup; one directory, cheap).
   */
  ahead(
    id: string,
    limits: CgroupLimits,
    owner: { uid: number; gid: number },
  ): SessionCgroup | undefined;
  /** See primeMigration(). */
  primeMigration(): Promise<void>;
  /**
   * Settles where this process lives before it starts a child that would
   * share its cgroup (a helper started ahead): on v2 the delegation moves
   * this process into a leaf of its own only while it is alone there, and
   * would otherwise ask systemd for a new scope. Best effort; create()
   * reports a failure.
   */
  settle(): void;
  /**
   * Limits what all sandboxes together may use, on their common parent
   * `<own>/underlay` (hierarchical on v1 and v2): the host's reserve holds
   * even when every sandbox runs to its own limits at once.
   */
  limitAll(total: { memoryBytes: number; pids: number }): void;
}

/**
 * Starts the RCU grace period a create's cgroup migration would otherwise
 * wait for, while the create does other work. Every write to cgroup.procs
 * takes cgroup_threadgroup_rwsem for writing, and the first writer after a
 * quiet spell waits a full grace period (6-8 ms on a 2-vCPU VM, most of a
 * create); writers shortly after pass at once. So this writes our own pid
 * into the cgroup we are in right now (read fresh: a no-op move) on a libuv
 * thread. Best effort: a failure only costs the wait it was meant to hide.
 */
function primeIn(procsOf: (ownLines: string[]) => string | undefined): Promise<void> {
  let procs: string | undefined;
  try {
    procs = procsOf(fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n'));
  } catch {
    return Promise.resolve();
  }
  if (!procs) return Promise.resolve();
  return fs.promises.writeFile(procs, String(process.pid)).catch(() => {});
}

export class V1Driver implements CgroupDriver {
  readonly mode = 'v1' as const;
  private readonly hierarchies: V1Hierarchy[];
  /** In hybrid mode the v2 hierarchy exists too; scoping the cgroupns there hides the host's tree. */
  private readonly unified: { mountPoint: string; own: string } | undefined;

  constructor() {
    // Named hierarchies (name=systemd) get a session dir too, never delegated:
    // the sandbox's cgroup namespace is rooted there, so a student who mounts
    // the hierarchy sees only the session, not the host's tree.
    this.hierarchies = v1Hierarchies();
    const mi = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    const uni = mi.split('\n').find((l) => l.includes(' - cgroup2 '));
    const ownLine = fs
      .readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('0::'));
    this.unified =
      uni && ownLine ? { mountPoint: uni.split(' ')[4] ?? '', own: ownLine.slice(3) } : undefined;
  }

  /** Delegated controllers available on this host. */
  controllers(): string[] {
    return this.hierarchies.flatMap((h) => h.controllers).filter((c) => V1_DELEGATED.has(c));
  }

  primeMigration(): Promise<void> {
    const h = this.hierarchies[0];
    if (!h) return Promise.resolve();
    return primeIn((lines) => {
      const own = lines.find((l) => l.split(':')[1] === h.key)?.split(':')[2];
      return own === undefined ? undefined : path.join(h.mountPoint, own, 'cgroup.procs');
    });
  }

  settle(): void {
    // v1 has nothing to settle: each hierarchy's cgroups are made below ours as we are.
  }

  limitAll(total: { memoryBytes: number; pids: number }): void {
    try {
      for (const h of this.hierarchies) {
        if (!h.controllers.includes('memory') && !h.controllers.includes('pids')) continue;
        const base = path.join(h.mountPoint, h.own, 'underlay');
        mkdirOnce(base);
        if (h.controllers.includes('memory')) {
          write(path.join(base, 'memory.limit_in_bytes'), String(total.memoryBytes));
          const memsw = path.join(base, 'memory.memsw.limit_in_bytes');
          if (fs.existsSync(memsw)) write(memsw, String(total.memoryBytes));
        }
        if (h.controllers.includes('pids')) write(path.join(base, 'pids.max'), String(total.pids));
      }
    } catch (err) {
      throw SandboxError.wrap('limit the parent cgroup of all sandboxes', err, 'cgroup');
    }
  }

  /** Whether the session's directory in hierarchy h is shown inside (mounted by init). */
  private static shown(h: V1Hierarchy): boolean {
    return h.controllers.some((c) => V1_DELEGATED.has(c));
  }

  /** Per hierarchy, once per process: its `underlay` dir exists, cpuset's is populated. */
  private readonly basesReady = new Set<string>();
  /** Which optional limit files each hierarchy has (the same in every cgroup of it). */
  private readonly hasFile = new Map<string, boolean>();

  private base(h: V1Hierarchy): string {
    const base = path.join(h.mountPoint, h.own, 'underlay');
    if (!this.basesReady.has(base)) {
      mkdirOnce(base);
      if (h.controllers.includes('cpuset')) initCpuset(base);
      this.basesReady.add(base);
    }
    return base;
  }

  private has(base: string, file: string): boolean {
    const key = path.join(base, file);
    let v = this.hasFile.get(key);
    if (v === undefined) this.hasFile.set(key, (v = fs.existsSync(key)));
    return v;
  }

  ahead(id: string, limits: CgroupLimits, owner: { uid: number; gid: number }): SessionCgroup {
    const ops: Op[] = [];
    const mk = (p: string): Op => ({ step: 'cgroup', op: 'mkdir', path: p, mode: 0o755 });
    const wr = (p: string, content: string): Op => ({
      step: 'cgroup',
      op: 'write',
      path: p,
      content,
    });
    try {
      for (const h of this.hierarchies) {
        const base = this.base(h);
        const dir = path.join(base, id);
        ops.push(mk(dir));
        // As create() does, in its order (see there for why each).
        if (h.controllers.includes('cpuset'))
          for (const f of ['cpuset.cpus', 'cpuset.mems'])
            ops.push(
              wr(path.join(dir, f), fs.readFileSync(path.join(base, f), 'utf8').trim() || '0'),
            );
        if (h.controllers.includes('memory')) {
          ops.push(wr(path.join(dir, 'memory.limit_in_bytes'), String(limits.memoryBytes)));
          if (this.has(base, 'memory.memsw.limit_in_bytes'))
            ops.push(wr(path.join(dir, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)));
          if (this.has(base, 'memory.kmem.tcp.limit_in_bytes'))
            ops.push(
              wr(
                path.join(dir, 'memory.kmem.tcp.limit_in_bytes'),
                String(Math.floor(limits.memoryBytes / 4)),
              ),
            );
        }
        if (h.controllers.includes('pids'))
          ops.push(wr(path.join(dir, 'pids.max'), String(limits.pids)));
        if (h.controllers.includes('cpu')) {
          ops.push(wr(path.join(dir, 'cpu.cfs_period_us'), String(PERIOD_US)));
          ops.push(
            wr(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * PERIOD_US))),
          );
        }
        if (V1Driver.shown(h) && !h.controllers.includes('memory'))
          for (const f of ['', 'cgroup.procs', 'tasks'])
            ops.push({
              step: 'cgroup',
              op: 'chown',
              path: f ? path.join(dir, f) : dir,
              uid: owner.uid,
              gid: owner.gid,
            });
      }
      if (this.unified) {
        const base = path.join(this.unified.mountPoint, this.unified.own, 'underlay');
        if (!this.basesReady.has(base)) {
          mkdirOnce(base);
          this.basesReady.add(base);
        }
        ops.push(mk(path.join(base, id)));
      }
    } catch (err) {
      throw SandboxError.wrap(`plan v1 cgroups for ${id}`, err, 'cgroup');
    }
    return { ...this.layout(id), makeOps: ops };
  }

  create(id: string, limits: CgroupLimits, owner: { uid: number; gid: number }): SessionCgroup {
    const dirs: string[] = [];
    try {
      for (const h of this.hierarchies) {
        const base = path.join(h.mountPoint, h.own, 'underlay');
        mkdirOnce(base);
        if (h.controllers.includes('cpuset')) initCpuset(base);
        const dir = path.join(base, id);
        fs.mkdirSync(dir);
        dirs.push(dir);
        if (h.controllers.includes('cpuset')) initCpuset(dir);
        if (h.controllers.includes('memory')) {
          write(path.join(dir, 'memory.limit_in_bytes'), String(limits.memoryBytes));
          // With swap accounting, cap memory+swap too, or a hog just swaps.
          const memsw = path.join(dir, 'memory.memsw.limit_in_bytes');
          if (fs.existsSync(memsw)) write(memsw, String(limits.memoryBytes));
          // v1 charges socket buffers to a memory cgroup only once a TCP limit
          // is set: without it, unread loopback buffers pin host memory
          // outside the sandbox's limit (2.3 GB from one 256 MB sandbox).
          // v2 always charges them to memory.current.
          const tcp = path.join(dir, 'memory.kmem.tcp.limit_in_bytes');
          if (fs.existsSync(tcp)) write(tcp, String(Math.floor(limits.memoryBytes / 4)));
        }
        if (h.controllers.includes('pids')) write(path.join(dir, 'pids.max'), String(limits.pids));
        if (h.controllers.includes('cpu')) {
          write(path.join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
          write(path.join(dir, 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * PERIOD_US)));
        }
        if (V1Driver.shown(h)) {
          // The memory hierarchy is shown inside but not delegated on v1: a
          // memory cgroup the student made would have no TCP limit of its own,
          // and v1 charges socket buffers only to cgroups that have one (from
          // such a child, one sandbox pinned 1.7 GiB of host memory); and
          // memory cgroup ids are one host-wide space of 65,535 that v1 cannot
          // bound per session (docs/sandbox.md#cgroup-delegation).
          if (!h.controllers.includes('memory'))
            for (const f of ['', 'cgroup.procs', 'tasks'])
              chown(path.join(dir, f), owner.uid, owner.gid);
        }
      }
      if (this.unified) {
        const base = path.join(this.unified.mountPoint, this.unified.own, 'underlay');
        mkdirOnce(base);
        const dir = path.join(base, id);
        fs.mkdirSync(dir);
        dirs.push(dir);
      }
    } catch (err) {
      removeCgroupDirs(dirs);
      throw SandboxError.wrap(`create v1 cgroups for ${id}`, err, 'cgroup');
    }
    return this.layout(id);
  }

  /** The session's dirs (as create makes them, in its order) and what init mounts. */
  private layout(id: string): SessionCgroup {
    const dirs = this.hierarchies.map((h) => path.join(h.mountPoint, h.own, 'underlay', id));
    if (this.unified)
      dirs.push(path.join(this.unified.mountPoint, this.unified.own, 'underlay', id));
    const delegated = this.hierarchies.filter((h) => V1Driver.shown(h)).map((h) => ({ h }));
    const procs = dirs.map((d) => path.join(d, 'cgroup.procs'));
    const tasks = dirs.slice(0, this.hierarchies.length).map((d) => path.join(d, 'tasks'));
    return {
      mode: 'v1',
      afterStart: () => {},
      dirs,
      attachProcs: procs,
      joinProcs: this.unified ? [...tasks, procs[procs.length - 1] as string] : tasks,
      initOps: (root) => {
        const ops: Op[] = [
          mount(
            'rootfs',
            'cgroup',
            `${root}/sys/fs/cgroup`,
            'tmpfs',
            NOSUID_NODEV_NOEXEC,
            `mode=755,size=64k,nr_inodes=${FIXED_MOUNT_INODES}`,
          ),
        ];
        for (const { h } of delegated) {
          const name = h.key;
          ops.push({
            step: 'rootfs',
            op: 'mkdir',
            path: `${root}/sys/fs/cgroup/${name}`,
            mode: 0o755,
          });
          ops.push(
            mount(
              'rootfs',
              'cgroup',
              `${root}/sys/fs/cgroup/${name}`,
              'cgroup',
              NOSUID_NODEV_NOEXEC,
              h.controllers.join(','),
            ),
          );
          // Co-mounted hierarchies ("cpu,cpuacct") get per-controller links, as systemd makes.
          if (h.controllers.length > 1) {
            for (const c of h.controllers) {
              ops.push({
                step: 'rootfs',
                op: 'symlink',
                target: name,
                path: `${root}/sys/fs/cgroup/${c}`,
              });
            }
          }
        }
        // The tmpfs that holds the hierarchies, read-only once they are in
        // place (as on a v1 host): otherwise `mkdir /sys/fs/cgroup/lab` and a
        // write to its `cpu.max` "work" - into a tmpfs - and limit nothing,
        // which a student on a v1 host following v2 instructions would not see.
        ops.push(
          mount(
            'rootfs',
            'cgroup',
            `${root}/sys/fs/cgroup`,
            'tmpfs',
            ['MS_REMOUNT', 'MS_RDONLY', ...NOSUID_NODEV_NOEXEC],
            `mode=755,size=64k,nr_inodes=${FIXED_MOUNT_INODES}`,
          ),
        );
        return ops;
      },
    };
  }
}

export interface V2Options {
  /** The cgroup2 mount (default /sys/fs/cgroup; /sys/fs/cgroup/unified on hybrid hosts, for tests). */
  mountPoint?: string;
  /** Controllers to enable for sessions when available. */
  want?: string[];
}

function ownCgroupV2(): string {
  const ownLine = fs
    .readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  if (!ownLine)
    throw new SandboxError('no cgroup v2 entry in /proc/self/cgroup', { step: 'cgroup' });
  return ownLine.slice(3);
}

export class V2Driver implements CgroupDriver {
  readonly mode = 'v2' as const;
  readonly mountPoint: string;
  /** Our cgroup; changes once if systemd moves us into a scope of our own (delegateOwn). */
  private own: string;
  private readonly want: string[];

  constructor(opts: V2Options = {}) {
    this.mountPoint = opts.mountPoint ?? '/sys/fs/cgroup';
    this.own = ownCgroupV2();
    this.want = opts.want ?? ['cpu', 'memory', 'pids', 'cpuset', 'io', 'hugetlb'];
  }

  private ownDir(): string {
    return path.join(this.mountPoint, this.own);
  }

  primeMigration(): Promise<void> {
    // Settle where we live first (a failure here is reported by create()).
    // Nothing to prime: a v2 create migrates nothing (cloneInto), and a
    // prime would hold cgroup_mutex through its grace period, which the
    // helper's clone3(CLONE_INTO_CGROUP) takes too: it would make the
    // create wait for exactly what it no longer needs.
    this.settle();
    return Promise.resolve();
  }

  settle(): void {
    try {
      this.delegateOwn(this.controllers());
    } catch {
      // create() reports it
    }
  }

  /** Controllers we can hand to sessions: wanted and available in our own cgroup. */
  controllers(): string[] {
    const avail = fs
      .readFileSync(path.join(this.ownDir(), 'cgroup.controllers'), 'utf8')
      .trim()
      .split(/\s+/);
    return this.want.filter((c) => avail.includes(c));
  }

  private enable(dir: string, ctrls: string[]): void {
    if (ctrls.length === 0) return;
    const file = path.join(dir, 'cgroup.subtree_control');
    const have = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
    const missing = ctrls.filter((c) => !have.includes(c));
    if (missing.length === 0) return;
    try {
      fs.writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
    } catch (err) {
      throw SandboxError.wrap(`enable ${missing.join(' ')} in ${file}`, err, 'cgroup');
    }
  }

  /**
   * Enables the session controllers in our own cgroup, which v2 allows only
   * while it holds no process ("no internal processes"). So first we leave
   * it: alone there (a systemd unit), into a leaf `<own>/underlay-self`, as
   * nsjail does with NSJAIL_SELF; sharing it (a login session's scope, a
   * test runner's unit) - whose other processes are not ours to move - into
   * a transient scope systemd delegates to us, as rootless podman does.
   * Paths below our cgroup are computed after this (it may change).
   */
  private delegateOwn(ctrls: string[]): void {
    const file = path.join(this.ownDir(), 'cgroup.subtree_control');
    const have = fs.readFileSync(file, 'utf8').trim().split(/\s+/);
    const missing = ctrls.filter((c) => !have.includes(c));
    if (missing.length === 0) return;
    try {
      // The root cgroup (no systemd) and an empty one may enable controllers as they are.
      fs.writeFileSync(file, missing.map((c) => `+${c}`).join(' '));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY')
        throw SandboxError.wrap(`enable ${missing.join(' ')} in ${file}`, err, 'cgroup');
    }
    if (this.otherProcesses().length) this.moveToOwnScope();
    const leaf = path.join(this.ownDir(), 'underlay-self');
    mkdirOnce(leaf);
    write(path.join(leaf, 'cgroup.procs'), String(process.pid));
    this.enable(this.ownDir(), ctrls);
  }

  /** How sessions get their controllers from where we run (for `underlay doctor`). */
  delegation(): { own: string; others: number; ready: boolean; systemd: boolean } {
    const have = fs
      .readFileSync(path.join(this.ownDir(), 'cgroup.subtree_control'), 'utf8')
      .trim()
      .split(/\s+/);
    return {
      own: this.ownDir(),
      others: this.otherProcesses().length,
      ready: this.own === '/' || this.controllers().every((c) => have.includes(c)),
      systemd: this.mountPoint === '/sys/fs/cgroup' && fs.existsSync('/run/systemd/system'),
    };
  }

  private otherProcesses(): string[] {
    return fs
      .readFileSync(path.join(this.ownDir(), 'cgroup.procs'), 'utf8')
      .trim()
      .split(/\s+/)
      .filter((p) => p && Number(p) !== process.pid);
  }

  /**
   * Asks systemd (over D-Bus, with busctl) for a transient scope holding
   * only this process, with Delegate=yes, and waits until we are in it.
   * Without systemd, or when it refuses, the shared cgroup is an error with
   * the way out.
   */
  private moveToOwnScope(): void {
    const own = this.ownDir();
    const shared = new SandboxError(
      `cgroup ${own} holds other processes (${this.otherProcesses().join(' ')}), so its controllers cannot be delegated`,
      {
        step: 'cgroup',
        code: 'EBUSY',
        hint: 'run underlay as a systemd unit with Delegate=yes (scripts/underlay.service), or in a scope of its own: `systemd-run --scope -p Delegate=yes underlay ...`',
      },
    );
    if (this.mountPoint !== '/sys/fs/cgroup' || !fs.existsSync('/run/systemd/system')) throw shared;
    const unit = `underlay-${process.pid}-${Date.now().toString(36)}.scope`;
    const r = spawnSync(
      'busctl',
      [
        'call',
        '--quiet',
        'org.freedesktop.systemd1',
        '/org/freedesktop/systemd1',
        'org.freedesktop.systemd1.Manager',
        'StartTransientUnit',
        'ssa(sv)a(sa(sv))',
        unit,
        'fail',
        '4',
        ...['Description', 's', `Underlay sandboxes of pid ${process.pid}`],
        ...['PIDs', 'au', '1', String(process.pid)],
        ...['Delegate', 'b', 'true'],
        ...['CollectMode', 's', 'inactive-or-failed'],
        '0',
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    if (r.status !== 0) {
      shared.message += `; systemd did not give us a scope: ${(r.stderr || r.error?.message || '').trim()}`;
      throw shared;
    }
    // The job moves us asynchronously: wait (briefly, synchronously: this
    // runs once per process) until /proc/self/cgroup names the scope.
    const until = Date.now() + 10_000;
    for (;;) {
      const now = ownCgroupV2();
      if (now.endsWith(`/${unit}`)) {
        this.own = now;
        return;
      }
      if (Date.now() > until) {
        shared.message += `; systemd made ${unit} but we are still in ${now}`;
        throw shared;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    }
  }

  limitAll(total: { memoryBytes: number; pids: number }): void {
    const ctrls = this.controllers();
    try {
      this.delegateOwn(ctrls);
      const base = path.join(this.ownDir(), 'underlay');
      mkdirOnce(base);
      if (ctrls.includes('memory')) write(path.join(base, 'memory.max'), String(total.memoryBytes));
      if (ctrls.includes('pids')) write(path.join(base, 'pids.max'), String(total.pids));
    } catch (err) {
      throw SandboxError.wrap('limit the parent cgroup of all sandboxes', err, 'cgroup');
    }
  }

  ahead(): undefined {
    return undefined;
  }

  create(id: string, limits: CgroupLimits, owner: { uid: number; gid: number }): SessionCgroup {
    const ctrls = this.controllers();
    const dirs: string[] = [];
    try {
      this.delegateOwn(ctrls);
    } catch (err) {
      throw SandboxError.wrap(`create v2 cgroup for ${id}`, err, 'cgroup');
    }
    const base = path.join(this.ownDir(), 'underlay');
    const dir = path.join(base, id);
    const leaf = path.join(dir, 'init');
    try {
      mkdirOnce(base);
      this.enable(base, ctrls);
      fs.mkdirSync(dir);
      dirs.push(dir);
      write(path.join(dir, 'cgroup.max.descendants'), String(MAX_DESCENDANTS));
      write(path.join(dir, 'cgroup.max.depth'), String(MAX_DEPTH));
      if (ctrls.includes('memory')) {
        write(path.join(dir, 'memory.max'), String(limits.memoryBytes));
        const swap = path.join(dir, 'memory.swap.max');
        if (fs.existsSync(swap)) write(swap, '0');
      }
      if (ctrls.includes('pids')) write(path.join(dir, 'pids.max'), String(limits.pids));
      if (ctrls.includes('cpu')) {
        write(path.join(dir, 'cpu.max'), `${Math.round(limits.cpus * PERIOD_US)} ${PERIOD_US}`);
      }
      fs.mkdirSync(leaf);
      dirs.push(leaf);
      for (const d of [dir, leaf]) {
        for (const f of ['', 'cgroup.procs', 'cgroup.threads', 'cgroup.subtree_control']) {
          chown(path.join(d, f), owner.uid, owner.gid);
        }
      }
    } catch (err) {
      removeCgroupDirs(dirs);
      throw SandboxError.wrap(`create v2 cgroup for ${id}`, err, 'cgroup');
    }
    return {
      mode: 'v2',
      dirs,
      // The child is born in `<session>` and unshares its cgroup namespace
      // there, so the student's /sys/fs/cgroup is the session; init is born
      // in the leaf. Neither is migrated (see SessionCgroup.cloneInto).
      attachProcs: [],
      cloneInto: dir,
      initInto: leaf,
      joinProcs: [path.join(leaf, 'cgroup.procs')],
      // Only now is `<session>` empty (the child left it when it exited), so
      // controllers can be enabled for the student's own children, e.g.
      // `lab` in the cpu.max lab. Before, the child could not have entered.
      afterStart: () => this.enable(dir, ctrls),
      initOps: (root) => [
        mount('rootfs', 'cgroup2', `${root}/sys/fs/cgroup`, 'cgroup2', NOSUID_NODEV_NOEXEC, ''),
      ],
    };
  }
}

/**
 * A cgroup of its own for one terminal, below the session's (v1: in the
 * freezer hierarchy; v2: below the `init` leaf), so closing the terminal
 * kills exactly what it started - nohup and setsid included. Returns the
 * dirs made and the files to join instead of the session's (see joinProcs).
 */
export function terminalCgroup(
  r: Pick<SandboxResources, 'cgroupMode' | 'cgroupDirs' | 'joinProcs'>,
  name: string,
): { dirs: string[]; joinProcs: string[] } {
  const make = (dir: string) => {
    try {
      fs.mkdirSync(dir);
    } catch (err) {
      const e = SandboxError.wrap(`a cgroup for terminal ${name}`, err, 'join');
      throw (err as NodeJS.ErrnoException).code === 'EAGAIN'
        ? new SandboxError(e.message, {
            ...e,
            step: 'join',
            hint: `a session may hold at most ${MAX_DESCENDANTS} cgroups: remove some you made under /sys/fs/cgroup`,
          })
        : e;
    }
  };
  if (r.cgroupMode === 'v2') {
    const leaf = r.cgroupDirs[r.cgroupDirs.length - 1] as string;
    const dir = path.join(leaf, `t-${name}`);
    make(dir);
    return { dirs: [dir], joinProcs: [path.join(dir, 'cgroup.procs')] };
  }
  const freezer = r.cgroupDirs.find((d) => fs.existsSync(path.join(d, 'freezer.state')));
  if (!freezer) return { dirs: [], joinProcs: r.joinProcs };
  const dir = path.join(freezer, `t-${name}`);
  make(dir);
  // The same file in the terminal's cgroup: `tasks`, or cgroup.procs in a
  // record from before joins used `tasks`.
  return {
    dirs: [dir],
    joinProcs: r.joinProcs.map((p) =>
      path.dirname(p) === freezer ? path.join(dir, path.basename(p)) : p,
    ),
  };
}

/** Paths longer than this are reached through an fd anchor (PATH_MAX is 4096). */
const ANCHOR_AT = 2048;

/**
 * A cgroup dir and all its descendants, children before parents.
 * Students may nest cgroups deeper than PATH_MAX, where any full path fails
 * with ENAMETOOLONG; so once a path grows long, the walk opens the directory
 * and continues below `/proc/self/fd/<fd>`, which the kernel resolves
 * without the prefix. Every path yielded is short; an anchor stays open
 * until its subtree is done (or the consumer stops early).
 */
export function* cgroupTree(root: string): Generator<string, void, undefined> {
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    if (root.length + e.name.length + 1 < ANCHOR_AT) {
      yield* cgroupTree(path.join(root, e.name));
      continue;
    }
    const anchor = fs.openSync(root, 'r');
    try {
      yield* cgroupTree(`/proc/self/fd/${anchor}/${e.name}`);
    } finally {
      fs.closeSync(anchor);
    }
  }
  yield root;
}

/** Visits cgroupTree(root) synchronously: for the few dirs the server itself made. */
export function walkCgroupTree(root: string, visit: (dir: string) => void): void {
  for (const dir of cgroupTree(root)) visit(dir);
}

/**
 * Visits cgroupTree(root), yielding to the event loop every WALK_SLICE dirs:
 * a student may have made tens of thousands of cgroups, and a teardown must
 * not stall every other session's terminals while it walks them.
 */
export async function walkCgroupTreeAsync(
  root: string,
  visit: (dir: string) => void,
): Promise<void> {
  let n = 0;
  for (const dir of cgroupTree(root)) {
    visit(dir);
    if (++n % WALK_SLICE === 0) await new Promise((r) => setImmediate(r));
  }
}
/** Dirs visited between two yields (each visit is one rmdir or one small read). */
const WALK_SLICE = 256;

/** All pids in a cgroup dir and its descendants. */
export async function cgroupPids(dir: string): Promise<number[]> {
  const out: number[] = [];
  await walkCgroupTreeAsync(dir, (d) => {
    let text = '';
    try {
      text = fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8');
    } catch {
      return;
    }
    for (const p of text.split('\n')) if (p) out.push(Number(p));
  });
  return out;
}

/**
 * Kills every process in the session's cgroups - the only reliable way to end
 * `nohup`, `setsid` and daemonised processes (docs/terminals.md#terminal-cgroups).
 * v2: cgroup.kill (5.14+). v1: freeze, SIGKILL every pid, thaw, until empty;
 * frozen tasks cannot exit, so a pid read from cgroup.procs cannot be
 * recycled before our kill lands.
 */
export async function killCgroups(
  mode: CgroupMode,
  dirs: string[],
  // A slow host (UNDERLAY_TIME_SCALE) gets longer: 50 sandboxes torn down at
  // once in the emulated guest took more than 5 s to empty their cgroups.
  timeoutMs = 5000 * timeScale(),
): Promise<void> {
  const existing = dirs.filter((d) => fs.existsSync(d));
  if (existing.length === 0) return;
  if (mode === 'v2') {
    const top = existing[0] as string;
    const killFile = path.join(top, 'cgroup.kill');
    if (fs.existsSync(killFile)) {
      write(killFile, '1', 'teardown');
    }
  }
  const freezer = existing.find((d) => fs.existsSync(path.join(d, 'freezer.state')));
  const v2freeze = mode === 'v2' ? path.join(existing[0] as string, 'cgroup.freeze') : undefined;
  const killPass = async () => {
    if (freezer) write(path.join(freezer, 'freezer.state'), 'FROZEN', 'teardown');
    if (v2freeze && fs.existsSync(v2freeze)) write(v2freeze, '1', 'teardown');
    for (const d of existing) {
      for (const pid of await cgroupPids(d)) {
        signalled.add(pid);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    // A child the student froze itself stays FROZEN when the parent thaws
    // (v1 keeps a self-freezing state), and a frozen task cannot die:
    // thaw every level, not just the top.
    if (freezer)
      await walkCgroupTreeAsync(freezer, (d) => {
        const state = path.join(d, 'freezer.state');
        if (fs.existsSync(state)) write(state, 'THAWED', 'teardown');
      });
    if (v2freeze && fs.existsSync(v2freeze)) write(v2freeze, '0', 'teardown');
    lastPass = Date.now();
  };
  // Killed tasks leave cgroup.procs as they exit. Another kill pass runs
  // when a pid shows up that was never signalled (a fork raced the last
  // pass) and every 10 ms otherwise.
  const signalled = new Set<number>();
  let lastPass = 0;
  const emptied = await pollUntil(async () => {
    const pids = (await Promise.all(existing.map((d) => cgroupPids(d)))).flat();
    if (pids.length === 0) return true;
    if (pids.some((p) => !signalled.has(p)) || Date.now() - lastPass > 10) await killPass();
    return false;
  }, timeoutMs);
  if (!emptied) {
    throw new SandboxError(`processes still in ${existing.join(', ')} after ${timeoutMs} ms`, {
      step: 'teardown',
      code: 'EBUSY',
    });
  }
}

function rmdirCgroup(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw SandboxError.wrap(`rmdir ${dir}`, err, 'teardown');
    }
  }
}

/**
 * rmdir depth-first (student-made children first), newest dir first.
 * Idempotent. Synchronous: only for dirs the server just made and no student
 * has touched (a failed create).
 */
export function removeCgroupDirs(dirs: string[]): void {
  for (const d of [...dirs].reverse()) walkCgroupTree(d, rmdirCgroup);
}

/** removeCgroupDirs for trees a student may have grown: yields to the event loop as it goes. */
export async function removeCgroupTrees(dirs: string[]): Promise<void> {
  for (const d of [...dirs].reverse()) await walkCgroupTreeAsync(d, rmdirCgroup);
}

/**
 * The session disk's bandwidth and operation rate (docs/sandbox.md#disk-bandwidth),
 * on its own loop device `dev` ("major:minor"). Unbounded, five `dd`
 * fillers wrote 1.8 GB/s through their loop devices on a 2-vCPU host: the
 * copies, the writeback and the hypervisor's I/O took the CPU every other
 * student's terminal echo waits for (p99 ~0.1 s; 14 ms bounded).
 */
export interface DiskIo {
  dev: string;
  /** Bytes per second, reads and writes each. */
  bps: number;
  /** I/O operations per second, reads and writes each. */
  iops: number;
}

const V1_THROTTLE = ['read_bps', 'write_bps', 'read_iops', 'write_iops'].map(
  (f) => `blkio.throttle.${f}_device`,
);

/**
 * v1: the blkio hierarchy, the session's dir in it, and the hierarchy's root
 * when this mount shows it (a container's view of a subtree does not).
 */
function v1Blkio(dirs: string[]): { session?: string; root?: string } {
  const h = blkioHierarchy();
  if (!h) return {};
  return {
    session: dirs.find((d) => d.startsWith(h.mountPoint + path.sep)),
    root: h.mountRoot === '/' ? h.mountPoint : undefined,
  };
}

/** The blkio hierarchy, looked up once (every create and teardown asks; mountinfo grows with them). */
let blkio: V1Hierarchy | null | undefined;
function blkioHierarchy(): V1Hierarchy | null {
  if (blkio === undefined)
    blkio = v1Hierarchies().find((x) => x.controllers.includes('blkio')) ?? null;
  return blkio;
}

/**
 * What bounds a session disk's I/O on this host, for `underlay doctor`:
 * v2's io.max on the session cgroup (buffered writes included: cgroup
 * writeback charges them to the writer's cgroup); v1's blkio throttle on the
 * session's cgroup (reads, direct and synced writes) and on the hierarchy's
 * root, where the kernel's flusher writes back everyone's dirty pages.
 */
export function diskIoSupport(
  mode: CgroupMode,
  have: { ioController: boolean; dirtyBound: boolean },
): { ok: boolean; detail: string } {
  if (mode === 'v2')
    return have.ioController
      ? { ok: true, detail: 'io.max on each session cgroup (buffered writes included)' }
      : { ok: false, detail: 'the io controller is not delegated to us: disks are not bounded' };
  const h = blkioHierarchy();
  if (!h) return { ok: false, detail: 'no blkio hierarchy is mounted: disks are not bounded' };
  if (h.mountRoot !== '/')
    return {
      ok: false,
      detail: `${h.mountPoint} shows a subtree, not the blkio root where the flusher writes: buffered writes are not bounded`,
    };
  if (!have.dirtyBound)
    return {
      ok: false,
      detail:
        'no per-device dirty page bound (/sys/class/bdi/*/strict_limit, Linux >= 6.2): only reads and synced writes are bounded',
    };
  return {
    ok: true,
    detail:
      'blkio throttle on each session cgroup and, for the flusher, on the root for its device',
  };
}

/**
 * Sets the session disk's limits. `buffered` (v1): also the flusher's writes,
 * in the hierarchy's root (for this device only): only when the device's
 * dirty pages are bounded (disk.ts boundDirtyPages), or throttled writeback
 * would pile them up in the session's memory cgroup. Idempotent (an adopted
 * sandbox gets them again).
 */
export function setDiskRules(
  mode: CgroupMode,
  dirs: string[],
  io: DiskIo,
  buffered: boolean,
): void {
  if (mode === 'v2') {
    const top = dirs[0];
    if (!top || !fs.existsSync(path.join(top, 'io.max'))) return;
    write(
      path.join(top, 'io.max'),
      `${io.dev} rbps=${io.bps} wbps=${io.bps} riops=${io.iops} wiops=${io.iops}`,
    );
    return;
  }
  const b = v1Blkio(dirs);
  const targets = [b.session, buffered ? b.root : undefined].filter((d): d is string => !!d);
  for (const dir of targets)
    for (const f of V1_THROTTLE)
      write(path.join(dir, f), `${io.dev} ${f.includes('bps') ? io.bps : io.iops}`);
}

/**
 * Lifts them, before the disk is unmounted: the unmount writes back what is
 * dirty, which would otherwise crawl at the student's rate. v1's rules in
 * the root are removed (the device is the next sandbox's, or anybody's);
 * the session cgroup's go with it.
 */
export function liftDiskRules(mode: CgroupMode, dirs: string[], dev: string): void {
  if (mode === 'v2') {
    const file = dirs[0] && path.join(dirs[0], 'io.max');
    if (file && fs.existsSync(file))
      write(file, `${dev} rbps=max wbps=max riops=max wiops=max`, 'teardown');
    return;
  }
  const b = v1Blkio(dirs);
  for (const dir of [b.session, b.root])
    for (const f of V1_THROTTLE) {
      if (!dir) continue;
      const file = path.join(dir, f);
      let rules = '';
      try {
        rules = fs.readFileSync(file, 'utf8');
      } catch {
        continue; // the session's dir is gone already
      }
      if (rules.split('\n').some((l) => l.startsWith(`${dev} `)))
        write(file, `${dev} 0`, 'teardown');
    }
}

export function createDriver(mode: CgroupMode = detectCgroupMode()): CgroupDriver {
  return mode === 'v2' ? new V2Driver() : new V1Driver();
}

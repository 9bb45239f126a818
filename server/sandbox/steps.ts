/**
 * The ordered op list for one sandbox - the whole recipe in one function.
 * Step names are the ones in docs/sandbox.md#step-names; they appear verbatim in errors,
 * logs and the lab UI, because students are learning exactly these steps.
 *
 *   allocate-ids -> cgroup -> scratch -> idmap-lower -> overlay -> clone
 *   -> rootfs -> pivot-root -> hostname -> network -> init
 *
 * (allocate-ids, cgroup and scratch happen in manager.ts before this list runs.)
 */
import * as fs from 'node:fs';
import type { Op } from '../../native/index';
import type { SessionCgroup } from './cgroups';
import { FIXED_MOUNT_INODES } from './options';
import { mount, NOSUID_NODEV_NOEXEC } from './ops';

export interface StepPlan {
  uidBase: number;
  gidBase: number;
  hostname: string;
  /** Read-only base image directory (ids 0..65535 on disk). */
  imageRoot: string;
  /** Where the idmapped view of the image is attached on the host. */
  lowerDir: string;
  /**
   * false: `imageRoot` is already a copy shifted into this range (no
   * idmapped mounts on this kernel); bind it read-only instead.
   */
  idmap: boolean;
  upperDir: string;
  workDir: string;
  /** Overlay mount point on the host, and the sandbox's future root. */
  mergedDir: string;
  cgroup: SessionCgroup;
  /** Host dirs on the session disk bound as /tmp and /lab. */
  tmpDir: string;
  labDir: string;
  shmBytes: number;
  runBytes: number;
  shmInodes: number;
  runInodes: number;
}

/** Docker's masked paths (moby oci/defaults.go, incl. #49560's /proc/interrupts). */
const MASKED = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
  // Loop devices: every other session's disk image path and I/O counts.
  '/sys/devices/virtual/block',
];
const READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger'];
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/**
 * What one sandbox may hold of each per-user kernel count, far above what
 * the labs use (a few nested namespaces, a handful of inotify instances)
 * and far below the host's per-user defaults (the namespace ones are
 * tens of thousands). Counts the kernel lacks are left out.
 */
export const USER_LIMITS: Record<string, number> = {
  max_user_namespaces: 64,
  max_pid_namespaces: 128,
  max_net_namespaces: 64,
  max_mnt_namespaces: 128,
  max_uts_namespaces: 128,
  max_ipc_namespaces: 128,
  max_cgroup_namespaces: 128,
  max_time_namespaces: 64,
  max_inotify_instances: 128,
  max_inotify_watches: 16384,
  max_fanotify_groups: 16,
  max_fanotify_marks: 8192,
};

function userLimits(): [string, number][] {
  return Object.entries(USER_LIMITS).filter(([name]) => fs.existsSync(`/proc/sys/user/${name}`));
}

export function buildOps(p: StepPlan): Op[] {
  const R = p.mergedDir;
  const map = `0 ${p.uidBase} 65536`;
  const gmap = `0 ${p.gidBase} 65536`;
  const ops: Op[] = [
    // ---- host + user-namespace child -------------------------------------
    // v1: the session's cgroups, made here rather than by the server's JS
    // thread (CgroupDriver.ahead), before anything that uses them.
    ...(p.cgroup.makeOps ?? []),
    // The child becomes the session's host uid before it creates the user
    // namespace, so the namespace (and every per-user count inside it) is
    // charged to the session, not to host root.
    // v2: the child is born in the session's cgroup (no migration at all).
    ...(p.cgroup.cloneInto
      ? [{ step: 'cgroup', op: 'clone-into-cgroup', dir: p.cgroup.cloneInto } as Op]
      : []),
    { step: 'clone', op: 'clone-userns', uid: p.uidBase, gid: p.gidBase },
    // setgroups stays "allow" so students can use setgroups(2) inside; the
    // map is written by host root, which may map a whole range (no newuidmap).
    { step: 'clone', op: 'write-child-proc', file: 'uid_map', content: map },
    { step: 'clone', op: 'write-child-proc', file: 'gid_map', content: gmap },
    ...(p.idmap
      ? [{ step: 'idmap-lower', op: 'idmap-mount', source: p.imageRoot, target: p.lowerDir } as Op]
      : ([
          mount('idmap-lower', p.imageRoot, p.lowerDir, '', ['MS_BIND'], ''),
          mount(
            'idmap-lower',
            '',
            p.lowerDir,
            '',
            ['MS_BIND', 'MS_REMOUNT', 'MS_RDONLY', 'MS_NODEV'],
            '',
          ),
        ] as Op[])),
    // The child may begin: its ops up to await-host need only its mapped user
    // namespace. (After the idmapped mount, which is made with the child's
    // user namespace: the nested one the child makes next must not be it.)
    { step: 'clone', op: 'start-child' },
    // Everything above runs while the server still mounts the session disk;
    // the overlay's upper and work dirs are on the disk.
    { step: 'scratch', op: 'await-scratch' },
    // v1: into the session's cgroups (made by the first ops): the helper runs these
    // writes in a process of their own (the first cgroup migration waits for
    // an RCU grace period), alongside the overlay mount and the child's ops.
    ...p.cgroup.attachProcs.map((procs): Op => ({ step: 'cgroup', op: 'attach-child', procs })),
    // No nosuid: it would also disable file capabilities, and the setcap lab
    // would fail with EPERM (docs/sandbox.md#the-overlay-is-not-nosuid). nodev is safe.
    mount(
      'overlay',
      'overlay',
      R,
      'overlay',
      ['MS_NODEV'],
      `lowerdir=${p.lowerDir},upperdir=${p.upperDir},workdir=${p.workDir}`,
    ),
    { step: 'clone', op: 'release-child' },
    { step: 'clone', op: 'setids', uid: 0, gid: 0 },
    // Per-sandbox caps on namespaces, inotify and fanotify: written as root
    // of this (outer) user namespace, then the sandbox lives in one nested
    // inside it, whose root cannot reach the outer limits. The kernel checks
    // every level, so these bound the whole sandbox (docs/sandbox.md#per-sandbox-kernel-counts).
    ...userLimits().map(
      ([name, value]): Op => ({
        step: 'clone',
        op: 'write',
        path: `/proc/sys/user/${name}`,
        content: String(value),
      }),
    ),
    { step: 'clone', op: 'nest-userns', map: '0 0 65536' },
    { step: 'clone', op: 'setids', uid: 0, gid: 0 },
    // All but the mount namespace while the host may still wait for the disk
    // (a network namespace is the dearest, ~0.3 ms). The mount namespace is
    // copied from the host's once the overlay is mounted there (await-host).
    {
      step: 'clone',
      op: 'unshare',
      ns: ['CLONE_NEWUTS', 'CLONE_NEWIPC', 'CLONE_NEWNET', 'CLONE_NEWPID'],
    },
    { step: 'clone', op: 'await-host' },
    { step: 'clone', op: 'unshare', ns: ['CLONE_NEWNS'] },
    // The cgroup namespace's root is the cgroup its creator is in: only once
    // the attach-child writes are done.
    { step: 'cgroup', op: 'await-attach' },
    { step: 'clone', op: 'unshare', ns: ['CLONE_NEWCGROUP'] },
    ...(p.cgroup.initInto
      ? [{ step: 'cgroup', op: 'init-into-cgroup', dir: p.cgroup.initInto } as Op]
      : []),
    { step: 'clone', op: 'fork-init' },
    // ---- sandbox init (pid 1) ---------------------------------------------
    { step: 'init', op: 'set-dumpable', value: 1 },
    // Nothing we mount may propagate back to the host, nor host mounts in.
    mount('rootfs', '', '/', '', ['MS_REC', 'MS_PRIVATE'], ''),
    // The overlay arrived MNT_LOCKED from the host; a bind of it made here is
    // ours, and pivot_root accepts it (runc prepareRoot).
    mount('rootfs', R, R, '', ['MS_BIND', 'MS_REC'], ''),
    mount('rootfs', 'proc', `${R}/proc`, 'proc', NOSUID_NODEV_NOEXEC, ''),
    // sysfs may be mounted because the sandbox owns its network namespace; ro.
    mount('rootfs', 'sysfs', `${R}/sys`, 'sysfs', ['MS_RDONLY', ...NOSUID_NODEV_NOEXEC], ''),
    ...p.cgroup.initOps(R),
    // A minimal /dev: a few host device nodes bound in (mknod is EPERM in a
    // user namespace), a private devpts instance and shm/mqueue.
    mount(
      'rootfs',
      'tmpfs',
      `${R}/dev`,
      'tmpfs',
      ['MS_NOSUID', 'MS_NOEXEC'],
      `mode=755,size=64k,nr_inodes=${FIXED_MOUNT_INODES}`,
    ),
    ...DEVICES.flatMap((d): Op[] => [
      { step: 'rootfs', op: 'touch', path: `${R}/dev/${d}` },
      mount('rootfs', `/dev/${d}`, `${R}/dev/${d}`, '', ['MS_BIND'], ''),
    ]),
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/pts`, mode: 0o755 },
    mount(
      'rootfs',
      'devpts',
      `${R}/dev/pts`,
      'devpts',
      ['MS_NOSUID', 'MS_NOEXEC'],
      'newinstance,ptmxmode=0666,mode=0620,gid=5,max=256',
    ),
    { step: 'rootfs', op: 'symlink', target: 'pts/ptmx', path: `${R}/dev/ptmx` },
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/shm`, mode: 0o1777 },
    mount(
      'rootfs',
      'shm',
      `${R}/dev/shm`,
      'tmpfs',
      ['MS_NOSUID', 'MS_NODEV'],
      `mode=1777,size=${p.shmBytes},nr_inodes=${p.shmInodes}`,
    ),
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/mqueue`, mode: 0o755 },
    mount('rootfs', 'mqueue', `${R}/dev/mqueue`, 'mqueue', NOSUID_NODEV_NOEXEC, ''),
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd', path: `${R}/dev/fd` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/0', path: `${R}/dev/stdin` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/1', path: `${R}/dev/stdout` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/2', path: `${R}/dev/stderr` },
    // /tmp and /lab: the session disk (ext4), like the root's upper layer.
    // Nested labs need them: an overlay whose upper sits on the overlay root
    // fails ("wrong fs type"); on ext4 it mounts, user.* xattrs included
    // (userxattr overlays) on every kernel. Not nosuid (file caps).
    mount('rootfs', p.tmpDir, `${R}/tmp`, '', ['MS_BIND'], ''),
    { step: 'rootfs', op: 'mkdir', path: `${R}/lab`, mode: 0o755 },
    mount('rootfs', p.labDir, `${R}/lab`, '', ['MS_BIND'], ''),
    mount(
      'rootfs',
      'tmpfs',
      `${R}/run`,
      'tmpfs',
      ['MS_NOSUID', 'MS_NODEV'],
      `mode=755,size=${p.runBytes},nr_inodes=${p.runInodes}`,
    ),
    { step: 'pivot-root', op: 'pivot-root', newRoot: R },
    // Masks go on after the pivot, from inside the sandbox's own user
    // namespace, so they are not locked (see mask in native/src/helper).
    ...MASKED.map((path): Op => ({ step: 'rootfs', op: 'mask', path })),
    ...READONLY.map((path): Op => ({ step: 'rootfs', op: 'bind-ro', path })),
    { step: 'hostname', op: 'sethostname', name: p.hostname },
    { step: 'network', op: 'loopback-up' },
    // The netns default ("1 0": nobody may use ICMP datagram sockets). Written
    // explicitly so the setcap lab's plain ping copy fails as it should even
    // if a future kernel or distro default widens it (docs/sandbox.md#ping_group_range).
    { step: 'network', op: 'write', path: '/proc/sys/net/ipv4/ping_group_range', content: '1 0' },
    // PID 1 is under the same seccomp filter as every process a student
    // starts: sandbox root can ptrace it (it stays dumpable), so an
    // unfiltered init would run denied syscalls on their behalf.
    { step: 'init', op: 'seccomp' },
    { step: 'init', op: 'init-loop' },
  ];
  return ops;
}

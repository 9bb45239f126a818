/**
 * The ordered op list for one sandbox - the whole recipe in one function.
 * Step names are the ones in ARCHITECTURE.md; they appear verbatim in errors,
 * logs and the lab UI, because students are learning exactly these steps.
 *
 *   allocate-ids -> cgroup -> scratch -> idmap-lower -> overlay -> clone
 *   -> rootfs -> pivot-root -> hostname -> network -> init
 *
 * (allocate-ids, cgroup and scratch happen in sandbox.ts before this list runs.)
 */
import type { Op } from '../../native/index';
import type { SessionCgroup } from './cgroups';

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
  tmpBytes: number;
  tmpInodes: number;
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
];
const READONLY = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sysrq-trigger'];
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

export function buildOps(p: StepPlan): Op[] {
  const R = p.mergedDir;
  const map = `0 ${p.uidBase} 65536`;
  const gmap = `0 ${p.gidBase} 65536`;
  const nosuidNodevNoexec = ['MS_NOSUID', 'MS_NODEV', 'MS_NOEXEC'] as const;
  const ops: Op[] = [
    // ---- host + user-namespace child -------------------------------------
    { step: 'clone', op: 'clone-userns' },
    // setgroups stays "allow" so students can use setgroups(2) inside; the
    // map is written by host root, which may map a whole range (no newuidmap).
    { step: 'clone', op: 'write-child-proc', file: 'uid_map', content: map },
    { step: 'clone', op: 'write-child-proc', file: 'gid_map', content: gmap },
    ...(p.idmap
      ? [{ step: 'idmap-lower', op: 'idmap-mount', source: p.imageRoot, target: p.lowerDir } as Op]
      : ([
          {
            step: 'idmap-lower',
            op: 'mount',
            source: p.imageRoot,
            target: p.lowerDir,
            fstype: '',
            flags: ['MS_BIND'],
            data: '',
          },
          {
            step: 'idmap-lower',
            op: 'mount',
            source: '',
            target: p.lowerDir,
            fstype: '',
            flags: ['MS_BIND', 'MS_REMOUNT', 'MS_RDONLY', 'MS_NODEV'],
            data: '',
          },
        ] as Op[])),
    {
      step: 'overlay',
      op: 'mount',
      source: 'overlay',
      target: R,
      fstype: 'overlay',
      // No nosuid: it would also disable file capabilities, and the setcap
      // lab would fail with EPERM (SANDBOX.md §2.4). nodev is safe.
      flags: ['MS_NODEV'],
      data: `lowerdir=${p.lowerDir},upperdir=${p.upperDir},workdir=${p.workDir}`,
    },
    ...p.cgroup.attachProcs.map((procs): Op => ({ step: 'cgroup', op: 'attach-child', procs })),
    { step: 'clone', op: 'release-child' },
    { step: 'clone', op: 'setids', uid: 0, gid: 0 },
    {
      step: 'clone',
      op: 'unshare',
      ns: [
        'CLONE_NEWNS',
        'CLONE_NEWUTS',
        'CLONE_NEWIPC',
        'CLONE_NEWNET',
        'CLONE_NEWCGROUP',
        'CLONE_NEWPID',
      ],
    },
    { step: 'clone', op: 'fork-init' },
    // ---- sandbox init (pid 1) ---------------------------------------------
    { step: 'init', op: 'set-dumpable', value: 1 },
    // Nothing we mount may propagate back to the host, nor host mounts in.
    {
      step: 'rootfs',
      op: 'mount',
      source: '',
      target: '/',
      fstype: '',
      flags: ['MS_REC', 'MS_PRIVATE'],
      data: '',
    },
    // The overlay arrived MNT_LOCKED from the host; a bind of it made here is
    // ours, and pivot_root accepts it (runc prepareRoot).
    {
      step: 'rootfs',
      op: 'mount',
      source: R,
      target: R,
      fstype: '',
      flags: ['MS_BIND', 'MS_REC'],
      data: '',
    },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'proc',
      target: `${R}/proc`,
      fstype: 'proc',
      flags: [...nosuidNodevNoexec],
      data: '',
    },
    // sysfs may be mounted because the sandbox owns its network namespace; ro.
    {
      step: 'rootfs',
      op: 'mount',
      source: 'sysfs',
      target: `${R}/sys`,
      fstype: 'sysfs',
      flags: ['MS_RDONLY', ...nosuidNodevNoexec],
      data: '',
    },
    ...p.cgroup.initOps(R),
    // A minimal /dev: a few host device nodes bound in (mknod is EPERM in a
    // user namespace), a private devpts instance and shm/mqueue.
    {
      step: 'rootfs',
      op: 'mount',
      source: 'tmpfs',
      target: `${R}/dev`,
      fstype: 'tmpfs',
      flags: ['MS_NOSUID', 'MS_NOEXEC'],
      data: 'mode=755,size=64k,nr_inodes=256',
    },
    ...DEVICES.flatMap((d): Op[] => [
      { step: 'rootfs', op: 'touch', path: `${R}/dev/${d}` },
      {
        step: 'rootfs',
        op: 'mount',
        source: `/dev/${d}`,
        target: `${R}/dev/${d}`,
        fstype: '',
        flags: ['MS_BIND'],
        data: '',
      },
    ]),
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/pts`, mode: 0o755 },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'devpts',
      target: `${R}/dev/pts`,
      fstype: 'devpts',
      flags: ['MS_NOSUID', 'MS_NOEXEC'],
      data: 'newinstance,ptmxmode=0666,mode=0620,gid=5,max=256',
    },
    { step: 'rootfs', op: 'symlink', target: 'pts/ptmx', path: `${R}/dev/ptmx` },
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/shm`, mode: 0o1777 },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'shm',
      target: `${R}/dev/shm`,
      fstype: 'tmpfs',
      flags: ['MS_NOSUID', 'MS_NODEV'],
      data: 'mode=1777,size=65536k',
    },
    { step: 'rootfs', op: 'mkdir', path: `${R}/dev/mqueue`, mode: 0o755 },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'mqueue',
      target: `${R}/dev/mqueue`,
      fstype: 'mqueue',
      flags: [...nosuidNodevNoexec],
      data: '',
    },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd', path: `${R}/dev/fd` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/0', path: `${R}/dev/stdin` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/1', path: `${R}/dev/stdout` },
    { step: 'rootfs', op: 'symlink', target: '/proc/self/fd/2', path: `${R}/dev/stderr` },
    // Scratch for nested labs: an overlay whose upper sits on the overlay root
    // fails ("wrong fs type"); on tmpfs it mounts. Not nosuid (file caps).
    {
      step: 'rootfs',
      op: 'mount',
      source: 'tmpfs',
      target: `${R}/tmp`,
      fstype: 'tmpfs',
      flags: ['MS_NODEV'],
      data: `mode=1777,size=${p.tmpBytes},nr_inodes=${p.tmpInodes}`,
    },
    { step: 'rootfs', op: 'mkdir', path: `${R}/lab`, mode: 0o755 },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'lab',
      target: `${R}/lab`,
      fstype: 'tmpfs',
      flags: ['MS_NODEV'],
      data: `mode=755,size=${p.tmpBytes},nr_inodes=${p.tmpInodes}`,
    },
    {
      step: 'rootfs',
      op: 'mount',
      source: 'tmpfs',
      target: `${R}/run`,
      fstype: 'tmpfs',
      flags: ['MS_NOSUID', 'MS_NODEV'],
      data: 'mode=755,size=16m',
    },
    { step: 'pivot-root', op: 'pivot-root', newRoot: R },
    // Masks go on after the pivot, from inside the sandbox's own user
    // namespace, so they are not locked (see mask in native/src/helper).
    ...MASKED.map((path): Op => ({ step: 'rootfs', op: 'mask', path })),
    ...READONLY.map((path): Op => ({ step: 'rootfs', op: 'bind-ro', path })),
    { step: 'hostname', op: 'sethostname', name: p.hostname },
    { step: 'network', op: 'loopback-up' },
    // The netns default ("1 0": nobody may use ICMP datagram sockets). Written
    // explicitly so the setcap lab's plain ping copy fails as it should even
    // if a future kernel or distro default widens it (CURRICULUM.md C8).
    { step: 'network', op: 'write', path: '/proc/sys/net/ipv4/ping_group_range', content: '1 0' },
    { step: 'init', op: 'init-loop' },
  ];
  return ops;
}

/**
 * The JS-visible surface of `native/`: a closed set of thin syscall wrappers
 * (underlay_native.node), the op vocabulary of `underlay-nsexec create`, the
 * argv of `underlay-nsexec join`, and the error properties both report.
 * No policy lives here: server/sandbox decides which ops, in which order.
 * Only server/sandbox may import this module.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * The named sandbox steps (docs/sandbox.md#step-names). Every op carries one
 * and every error names one; students meet them in messages and the lab UI.
 *
 * Most reach C++ from TypeScript (an op's `step`, the `step` argument of
 * mount/umount) and come back verbatim. The ones C++ picks itself:
 * - `clone`: the create helper as a whole - it cannot be started, or its op
 *   list is malformed, incomplete or out of order (src/spawn.cc,
 *   src/helper/spec.cc, src/helper/create.cc)
 * - `join`: every failure of `underlay-nsexec join`, seccomp included
 *   (src/helper/join.cc, src/helper/seccomp.cc)
 * - `teardown`: pidfdOpen, pidfdSignal (src/pidfd.cc)
 * - `init`: setChildSubreaper (src/pidfd.cc)
 */
export type StepName =
  | 'allocate-ids'
  | 'cgroup'
  | 'scratch'
  | 'idmap-lower'
  | 'overlay'
  | 'clone'
  | 'rootfs'
  | 'pivot-root'
  | 'hostname'
  | 'network'
  | 'init'
  | 'join'
  | 'teardown'
  | 'image'
  | 'lab-files'
  | 'lab-setup';

/** StepName at run time; the mapped type makes it list every name, and no other. */
const STEP_NAMES: { readonly [K in StepName]: true } = {
  'allocate-ids': true,
  cgroup: true,
  scratch: true,
  'idmap-lower': true,
  overlay: true,
  clone: true,
  rootfs: true,
  'pivot-root': true,
  hostname: true,
  network: true,
  init: true,
  join: true,
  teardown: true,
  image: true,
  'lab-files': true,
  'lab-setup': true,
};

function isStepName(s: string): s is StepName {
  return Object.prototype.hasOwnProperty.call(STEP_NAMES, s);
}

/** Namespace kinds, as unshare(2) flag names. */
export type CloneFlag =
  | 'CLONE_NEWNS'
  | 'CLONE_NEWUTS'
  | 'CLONE_NEWIPC'
  | 'CLONE_NEWNET'
  | 'CLONE_NEWPID'
  | 'CLONE_NEWCGROUP'
  | 'CLONE_NEWUSER';

export type MountFlag =
  | 'MS_RDONLY'
  | 'MS_NOSUID'
  | 'MS_NODEV'
  | 'MS_NOEXEC'
  | 'MS_REMOUNT'
  | 'MS_BIND'
  | 'MS_REC'
  | 'MS_PRIVATE'
  | 'MS_SLAVE'
  | 'MS_SHARED'
  | 'MS_MOVE'
  | 'MS_RELATIME'
  | 'MS_NOATIME'
  | 'MS_STRICTATIME';

/**
 * One op of the helper's closed vocabulary. `step` is the named sandbox step
 * (docs/sandbox.md#step-names) the op belongs to; it is echoed in any error.
 * Stages: ops before `clone-userns` and between it and `release-child` run on
 * the host; ops up to `fork-init` run in the user-namespace child; the rest in
 * the sandbox init, ending with `init-loop`. Which op may run in which stage,
 * and its argc, is the table in src/helper/ops.cc; the helper checks a whole
 * list against it before it forks, and refuses a bad one with a `clone`
 * error whose detail names the op, its index and its step.
 */
export type Op = { step: StepName } &
  /**
   * Fork the user-namespace child, which first becomes host `uid`/`gid` (the
   * session's own range) and only then creates the user namespace: the
   * namespace's owner, and so the per-user kernel counts (namespaces,
   * inotify instances, ...) of everything made inside, is that uid, not
   * host root.
   */
  (| { op: 'clone-userns'; uid: number; gid: number }
    /**
     * Before clone-userns: the child is born in cgroup (v2) directory `dir`
     * (clone3 CLONE_INTO_CGROUP), instead of being moved there by attach-child.
     */
    | { op: 'clone-into-cgroup'; dir: string }
    | { op: 'write-child-proc'; file: 'uid_map' | 'gid_map' | 'setgroups'; content: string }
    | { op: 'idmap-mount'; source: string; target: string }
    | { op: 'attach-child'; procs: string }
    /**
     * The host stage waits for the scratch gate (startSandbox): the ops
     * before it run while the server still mounts the session disk.
     */
    | { op: 'await-scratch' }
    /**
     * Lets the user-namespace child begin its ops now (its maps are written),
     * up to its `await-host`, which waits for `release-child`. Both or neither.
     */
    | { op: 'start-child' }
    | { op: 'release-child' }
    | { op: 'setids'; uid: number; gid: number }
    | { op: 'unshare'; ns: CloneFlag[] }
    /**
     * A user namespace inside the current one, its uid and gid maps `map`
     * (ids of the current namespace), written by a helper that stays outside.
     */
    | { op: 'nest-userns'; map: string }
    /** After `start-child`: the child waits until the host reaches `release-child` (its mounts done). */
    | { op: 'await-host' }
    /** The child waits until the host's attach-child writes are done (they run alongside). */
    | { op: 'await-attach' }
    /** Before fork-init: init is born in cgroup (v2) directory `dir` (clone3 CLONE_INTO_CGROUP). */
    | { op: 'init-into-cgroup'; dir: string }
    | { op: 'fork-init' }
    | {
        op: 'mount';
        source: string;
        target: string;
        fstype: string;
        flags: MountFlag[];
        data: string;
      }
    | { op: 'mkdir'; path: string; mode: number }
    | { op: 'touch'; path: string }
    | { op: 'symlink'; target: string; path: string }
    | { op: 'write'; path: string; content: string }
    | { op: 'chown'; path: string; uid: number; gid: number }
    | { op: 'mask'; path: string }
    | { op: 'bind-ro'; path: string }
    | { op: 'pivot-root'; newRoot: string }
    | { op: 'sethostname'; name: string }
    | { op: 'loopback-up' }
    | { op: 'set-dumpable'; value: 0 | 1 }
    | { op: 'seccomp' }
    | { op: 'init-loop' }
  );

/** Positional args of each op, in the order the helper reads them. */
function opArgs(o: Op): string[] {
  switch (o.op) {
    case 'write-child-proc':
      return [o.file, o.content];
    case 'idmap-mount':
      return [o.source, o.target];
    case 'attach-child':
      return [o.procs];
    case 'clone-into-cgroup':
    case 'init-into-cgroup':
      return [o.dir];
    case 'setids':
      return [String(o.uid), String(o.gid)];
    case 'unshare':
      return [o.ns.join('|')];
    case 'nest-userns':
      return [o.map];
    case 'mount':
      return [o.source, o.target, o.fstype, o.flags.join('|'), o.data];
    case 'mkdir':
      return [o.path, o.mode.toString(8)];
    case 'touch':
    case 'mask':
    case 'bind-ro':
      return [o.path];
    case 'symlink':
      return [o.target, o.path];
    case 'write':
      return [o.path, o.content];
    case 'chown':
      return [o.path, String(o.uid), String(o.gid)];
    case 'pivot-root':
      return [o.newRoot];
    case 'sethostname':
      return [o.name];
    case 'set-dumpable':
      return [String(o.value)];
    case 'clone-userns':
      return [String(o.uid), String(o.gid)];
    case 'start-child':
    case 'release-child':
    case 'await-host':
    case 'await-attach':
    case 'await-scratch':
    case 'fork-init':
    case 'loopback-up':
    case 'seccomp':
    case 'init-loop':
      return [];
  }
}

/** A netstring's text: the length counts UTF-8 bytes. */
function netstring(s: string): string {
  return `${Buffer.byteLength(s, 'utf8')}:${s},`;
}

/**
 * Serialises ops for `underlay-nsexec create` (netstrings: step, op, argc,
 * args). One string, one Buffer at the end: ~600 netstrings per create
 * (a Buffer each cost ~0.3 ms of the create's path).
 */
export function encodeOps(ops: readonly Op[]): Buffer {
  let out = '';
  for (const o of ops) {
    const args = opArgs(o);
    out += netstring(o.step) + netstring(o.op) + netstring(String(args.length));
    for (const a of args) out += netstring(a);
  }
  return Buffer.from(out, 'utf8');
}

/**
 * What native code knows about a failure: Node's errno shape plus the named
 * step. The addon passes these to the factory given to `initialize()`, and
 * `parseErrRecord` reads them from the join helper's stderr. Neither writes a
 * message: the server's factory does (server/sandbox/errors.ts,
 * `SandboxError.fromNative`), so the wording lives in one place.
 */
export interface NativeErrorProps {
  /** errno name ('EPERM'); undefined when errno is 0 (not a syscall failure). */
  code: string | undefined;
  errno: number;
  /** The failing syscall ('mount', 'setns'); '' when none (e.g. a bad op list). */
  syscall: string;
  path: string;
  step: StepName;
  /** Flags, data, or what was wrong with the op list; '' when nothing to add. */
  detail: string;
}

/** argv of one `underlay-nsexec join`: enter a running sandbox and run `argv` in it. */
export interface JoinSpec {
  /** Host pid of the sandbox init. */
  pid: number;
  /** Inode of the init's user namespace: a recycled pid can never lead into another sandbox. */
  usernsIno: number;
  /** cgroup.procs files the helper writes itself into before entering. */
  cgroupProcs: string[];
  /** Sandbox uid/gid to run as (helper default: 0). */
  uid?: number;
  gid?: number;
  cwd: string;
  /** Where to start instead when `cwd` cannot be entered (a terminal is told); unset: fail. */
  cwdFallback?: string;
  /** The command's whole environment; nothing is inherited. */
  env: Record<string, string>;
  /** A session of its own, so the command cannot reach the caller's controlling terminal. */
  setsid?: boolean;
  /**
   * A terminal: the command gets a pty of the sandbox's own devpts (so `tty`
   * and job control work inside), this size; its master comes back over the
   * console socket whose other end is the caller's fd `consoleFd`, inode
   * `consoleIno` (`consoleSocket`, `receivePty`; the helper copies it with
   * pidfd_getfd, so the caller must be its parent and keep that fd open
   * until then; the inode proves it copied that very socket).
   */
  pty?: { cols: number; rows: number; consoleFd: number; consoleIno: number };
  /** The seccomp deny-list (default true; false only for tests that prove it matters). */
  seccomp?: boolean;
  /** RLIMIT_NPROC, soft and hard, of the command (absent: inherited). */
  nproc?: number;
  /**
   * A root of its own for the command (needs uid 0): a fresh tmpfs with host
   * trees and the sandbox's own paths in it and a fresh /proc, then the
   * actions after pivot_root. Absent: the command shares the sandbox's mounts.
   */
  view?: JoinView;
  argv: string[];
}

export interface JoinView {
  /** Host dirs, read-only, at these paths of the new root (relative: 'usr', 'usr/local/bin'). */
  trees: { hostDir: string; target: string }[];
  /** The sandbox's own paths ('/lab'), cloned recursively to the same place. */
  binds: string[];
  /** In the new root, after pivot_root, in order (absolute paths). */
  actions: (
    | { mkdir: string }
    | { mount: { fstype: string; source: string; target: string; data: string } }
    | { symlink: { target: string; path: string } }
  )[];
}

function intArg(name: string, v: number, min: number): string {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new RangeError(`joinArgs: ${name} must be an integer >= ${min}, got ${v}`);
  }
  return String(v);
}

/**
 * The arguments after the helper's path, exactly as src/helper/join.cc
 * parses them: `spawn(native.helperPath, joinArgs(spec))`. Throws RangeError
 * for values the helper would misread silently (a fractional pid, an env name
 * with '=', usernsIno 0, which turns the namespace check off).
 */
export function joinArgs(spec: JoinSpec): string[] {
  const args = ['join', '--pid', intArg('pid', spec.pid, 1)];
  args.push('--userns-ino', intArg('usernsIno', spec.usernsIno, 1));
  for (const p of spec.cgroupProcs) args.push('--cgroup', p);
  if (spec.uid !== undefined) args.push('--uid', intArg('uid', spec.uid, 0));
  if (spec.gid !== undefined) args.push('--gid', intArg('gid', spec.gid, 0));
  args.push('--cwd', spec.cwd);
  if (spec.cwdFallback !== undefined) args.push('--cwd-fallback', spec.cwdFallback);
  for (const [k, v] of Object.entries(spec.env)) {
    if (k === '' || k.includes('='))
      throw new RangeError(`joinArgs: bad env name ${JSON.stringify(k)}`);
    args.push('--env', `${k}=${v}`);
  }
  if (spec.setsid) args.push('--setsid');
  if (spec.pty)
    args.push(
      '--pty',
      intArg('pty.cols', spec.pty.cols, 1),
      intArg('pty.rows', spec.pty.rows, 1),
      '--console-fd',
      intArg('pty.consoleFd', spec.pty.consoleFd, 0),
      '--console-ino',
      intArg('pty.consoleIno', spec.pty.consoleIno, 1),
    );
  if (spec.seccomp === false) args.push('--no-seccomp');
  if (spec.nproc !== undefined) args.push('--nproc', intArg('nproc', spec.nproc, 1));
  if (spec.view) {
    if (spec.uid) throw new RangeError('joinArgs: a view needs uid 0');
    for (const t of spec.view.trees) {
      if (t.target.startsWith('/') || t.target.split('/').includes('..'))
        throw new RangeError(`joinArgs: a tree's target is relative to the new root: ${t.target}`);
      args.push('--tool-tree', t.hostDir, t.target);
    }
    for (const b of spec.view.binds) {
      if (!b.startsWith('/') || b === '/' || b.split('/').includes('..'))
        throw new RangeError(`joinArgs: a bind is an absolute path below /: ${b}`);
      args.push('--view-bind', b);
    }
    for (const a of spec.view.actions) {
      if ('mkdir' in a) args.push('--view-mkdir', a.mkdir);
      else if ('mount' in a)
        args.push('--view-mount', a.mount.fstype, a.mount.source, a.mount.target, a.mount.data);
      else args.push('--view-symlink', a.symlink.target, a.symlink.path);
    }
  }
  if (spec.argv.length === 0) throw new RangeError('joinArgs: argv is empty');
  args.push('--', ...spec.argv);
  return args;
}

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(os.constants.errno)) {
  if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name); // EAGAIN before EWOULDBLOCK, as Node names them
}

/**
 * Reads the helper's failure record (src/helper/report.h):
 * `ERR\tstep\tsyscall\terrno\tpath\tdetail`. `underlay-nsexec join` writes it
 * as the first line of its stderr and exits 125; only that first line
 * counts, because once the command runs, stderr is the sandbox's and may say
 * anything. Undefined when the text does not start with a well-formed record
 * (including a step outside StepName). Pure parsing: no message. A command
 * that prints such a line and exits 125 itself is indistinguishable, so the
 * props are untrusted text like any sandbox output.
 */
export function parseErrRecord(text: string): NativeErrorProps | undefined {
  const nl = text.indexOf('\n');
  const f = (nl < 0 ? text : text.slice(0, nl)).split('\t');
  if (f.length !== 6 || f[0] !== 'ERR') return undefined;
  const [, step = '', syscall = '', errnoText = '', recordPath = '', detail = ''] = f;
  if (!isStepName(step) || !/^\d{1,4}$/.test(errnoText)) return undefined;
  const errno = Number(errnoText);
  return { code: ERRNO_NAMES.get(errno), errno, syscall, path: recordPath, step, detail };
}

export interface NativeAddon {
  /**
   * Injects the error factory: every error the addon throws or rejects with
   * is `factory(props)`. C++ only gathers the props; the factory writes the
   * message (server/sandbox/errors.ts, `SandboxError.fromNative`). Before
   * this is called, errors are plain Errors named by their errno code.
   */
  initialize(factory: (props: NativeErrorProps) => Error): void;
  /** mount(2) in the host mount namespace. Empty strings mean NULL. */
  mount(
    source: string,
    target: string,
    fstype: string,
    flags: string,
    data: string,
    step: StepName,
  ): void;
  /**
   * Mounts the filesystem image `image` on `target` through a free loop
   * device (LOOP_CTL_GET_FREE + LOOP_CONFIGURE with AUTOCLEAR and direct
   * I/O): the device detaches itself when the mount goes. Resolves with its
   * path. Runs off the JS thread (the mount flushes and commits a journal).
   */
  mountLoop(
    image: string,
    target: string,
    fstype: string,
    flags: string,
    data: string,
    step: StepName,
  ): Promise<string>;
  /**
   * mountLoop's first half: `image` on a free loop device (AUTOCLEAR, direct
   * I/O), held by the fd this resolves with (as a decimal string) until
   * mountDetached; closing the fd instead detaches the device. Off the JS thread.
   */
  attachLoop(image: string, step: StepName): Promise<string>;
  /**
   * Mounts `dev` (attachLoop's) as a detached mount (fsopen, fsconfig, fsmount; Linux >=
   * 5.2): in no mount namespace, so a namespace made meanwhile holds no copy
   * of it. Closes `fd`; resolves with the mount's fd (as a decimal string),
   * which moveMount places and whose close drops an unplaced mount. `data`:
   * "flag,key=value". Off the JS thread.
   */
  mountDetached(
    fd: number,
    dev: string,
    fstype: string,
    flags: string,
    data: string,
    step: StepName,
  ): Promise<string>;
  /** move_mount(2) of a detached mount (mountDetached) to `target`; the fd stays the caller's. */
  moveMount(mountFd: number, target: string, step: StepName): void;
  /**
   * A new file `dst` (0600; must not exist) with `src`'s size and data, its
   * holes kept (SEEK_DATA/SEEK_HOLE + copy_file_range): a sparse image copy.
   */
  copySparse(src: string, dst: string, step: StepName): void;
  /** umount2(2); `detach` = MNT_DETACH. Off the JS thread (an ext4 unmount commits its journal). */
  umount(target: string, detach: boolean, step: StepName): Promise<void>;
  pidfdOpen(pid: number): number;
  pidfdSignal(fd: number, signo: number): void;
  closeFd(fd: number): void;
  /** prctl(PR_SET_CHILD_SUBREAPER): orphaned sandbox inits re-parent to this process. */
  setChildSubreaper(): void;
  /** waitpid(pid, WNOHANG) for one specific pid; true if it was reaped. */
  reapChild(pid: number): boolean;
  /**
   * A SOCK_SEQPACKET socketpair, both ends close-on-exec: [server, helper].
   * A `join --pty --console-fd <helper>` copies `helper` from its parent.
   */
  consoleSocket(): [number, number];
  /**
   * The pty master a join helper sent over the console socket `sock`
   * (SCM_RIGHTS), non-blocking and close-on-exec; -1 if none is queued yet.
   * Never blocks.
   * Anything but a pty master (5:2) is closed and refused (EBADMSG).
   */
  receivePty(sock: number): number;
  /** TIOCSWINSZ on a pty master (the kernel sends SIGWINCH to its foreground job). */
  setWindowSize(fd: number, cols: number, rows: number): void;
  /** Runs the encoded op list in a fresh underlay-nsexec; resolves with the sandbox init's host pid. */
  createSandbox(helperPath: string, spec: Buffer): Promise<{ initPid: number }>;
  /**
   * createSandbox for a spec with an `await-scratch` op: the helper starts at
   * once and waits there until one byte is written to `gate` (go on) or
   * `gate` is closed (give up: `done` rejects). The caller closes `gate`.
   */
  startSandbox(
    helperPath: string,
    spec: Buffer,
  ): { done: Promise<{ initPid: number }>; gate: number };
  /**
   * The same, the helper started before its spec is known: it waits for the
   * spec on its stdin, whose write end is `spec`. The caller writes the
   * encoded ops there and closes it; closing it unwritten ends the helper
   * (`done` rejects with a spec error).
   */
  startSandbox(helperPath: string): {
    done: Promise<{ initPid: number }>;
    gate: number;
    spec: number;
  };
  /**
   * `path args...` with pipes for stdin/stdout/stderr, by posix_spawn on a
   * worker thread (no fork of Node's address space on the JS thread). The
   * fds are the parent's ends (close-on-exec); the caller must hand `pidfd`
   * to watchExit, which reaps the child.
   */
  spawnPiped(
    path: string,
    args: string[],
  ): Promise<{ pid: number; pidfd: number; stdin: number; stdout: number; stderr: number }>;
  /**
   * Calls `cb` once the child of `pidfd` has exited, reaping it (waitid
   * P_PIDFD: that child only): `code` its exit status, or -1 with `signal`.
   * Takes the pidfd. The watch keeps the event loop alive.
   */
  watchExit(pidfd: number, cb: (code: number, signal: number) => void): void;
}

export interface Native {
  addon: NativeAddon;
  /** Absolute path of the underlay-nsexec executable (create + join). */
  helperPath: string;
}

let cached: Native | undefined;

/**
 * Locates the build. Fails with every path it tried, because "module not
 * found" with no paths sends people hunting.
 */
export function loadNative(): Native {
  if (cached) return cached;
  const roots = [path.resolve(__dirname, '..', '..', 'native'), path.resolve(__dirname)];
  const tried: string[] = [];
  for (const root of roots) {
    for (const kind of ['Release', 'Debug']) {
      const dir = path.join(root, 'build', kind);
      const addonPath = path.join(dir, 'underlay_native.node');
      const helperPath = path.join(dir, 'underlay-nsexec');
      tried.push(addonPath);
      if (fs.existsSync(addonPath) && fs.existsSync(helperPath)) {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const addon = require(addonPath) as NativeAddon;
        cached = { addon, helperPath };
        return cached;
      }
    }
  }
  throw new Error(
    `underlay native module is not built (tried ${tried.join(', ')}). Run: npm run build:native`,
  );
}

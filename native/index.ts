/**
 * The JS-visible surface of `native/`: a closed set of thin syscall wrappers
 * (underlay_native.node) and the op vocabulary of the underlay-nsexec helper.
 * No policy lives here: server/sandbox decides which ops, in which order.
 * Only server/sandbox may import this module.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

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
 * (ARCHITECTURE.md) the op belongs to; it is echoed in any error.
 * Stages: ops before `clone-userns` and between it and `release-child` run on
 * the host; ops up to `fork-init` run in the user-namespace child; the rest in
 * the sandbox init, ending with `init-loop`.
 */
export type Op = { step: string } & (
  | { op: 'clone-userns' }
  | { op: 'write-child-proc'; file: 'uid_map' | 'gid_map' | 'setgroups'; content: string }
  | { op: 'idmap-mount'; source: string; target: string }
  | { op: 'attach-child'; procs: string }
  | { op: 'release-child' }
  | { op: 'setids'; uid: number; gid: number }
  | { op: 'unshare'; ns: CloneFlag[] }
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
    case 'setids':
      return [String(o.uid), String(o.gid)];
    case 'unshare':
      return [o.ns.join('|')];
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
    case 'release-child':
    case 'fork-init':
    case 'loopback-up':
    case 'init-loop':
      return [];
  }
}

function netstring(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from(`${b.length}:`), b, Buffer.from(',')]);
}

/** Serialises ops for `underlay-nsexec create` (netstrings: step, op, argc, args). */
export function encodeOps(ops: readonly Op[]): Buffer {
  const parts: Buffer[] = [];
  for (const o of ops) {
    const args = opArgs(o);
    parts.push(netstring(o.step), netstring(o.op), netstring(String(args.length)));
    for (const a of args) parts.push(netstring(a));
  }
  return Buffer.concat(parts);
}

/** Properties of every error the addon throws or rejects with. */
export interface NativeErrorProps {
  code: string | undefined;
  errno: number;
  syscall: string;
  path: string;
  step: string;
  detail: string;
}

export interface NativeAddon {
  /** Injects the error class the addon constructs: `new cls(message, props)`. */
  initialize(cls: new (message: string, props: NativeErrorProps) => Error): void;
  /** mount(2) in the host mount namespace. Empty strings mean NULL. */
  mount(
    source: string,
    target: string,
    fstype: string,
    flags: string,
    data: string,
    step: string,
  ): void;
  /** umount2(2); `detach` = MNT_DETACH. */
  umount(target: string, detach: boolean, step: string): void;
  pidfdOpen(pid: number): number;
  pidfdSignal(fd: number, signo: number): void;
  /** True once the process behind the pidfd has exited (waits up to timeoutMs). */
  pidfdExited(fd: number, timeoutMs: number): boolean;
  closeFd(fd: number): void;
  /** prctl(PR_SET_CHILD_SUBREAPER): orphaned sandbox inits re-parent to this process. */
  setChildSubreaper(): void;
  /** waitpid(pid, WNOHANG) for one specific pid; true if it was reaped. */
  reapChild(pid: number): boolean;
  /** Runs the encoded op list in a fresh underlay-nsexec; resolves with the sandbox init's host pid. */
  createSandbox(helperPath: string, spec: Buffer): Promise<{ initPid: number }>;
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

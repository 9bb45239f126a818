/**
 * The session disk (docs/sandbox.md#the-session-disk): what a student writes
 * (the root overlay's upper layer, /tmp, /lab) lives in an ext4 image of its
 * own, a sparse file in the state dir, instead of a tmpfs. Its size is the
 * quota: full means ENOSPC, never an OOM kill, and its pages are ordinary
 * page cache the kernel can write back and reclaim. ext4 keeps user.*
 * xattrs on every kernel we support, which userxattr overlays (the overlay
 * labs) need. mke2fs formats it here; the loop device and the mount are the
 * native module's (mountLoop).
 */
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SandboxError } from './errors';

const MiB = 1024 * 1024;
/** Below this, no journal: mke2fs would give it 4 MiB of a small disk. */
const JOURNAL_FROM = 64 * MiB;

/** mke2fs from e2fsprogs (Debian: /usr/sbin, which a service's PATH may lack). */
export function mke2fsPath(): string | undefined {
  return ['/usr/sbin/mke2fs', '/sbin/mke2fs'].find((p) => fs.existsSync(p));
}

/**
 * Loop devices still backed by `image` (/sys/block/loopN/loop/backing_file):
 * a mount of the disk that outlived a lazy unmount (a host process had a file
 * open in it) keeps its loop device until released.
 */
export function loopDevicesOf(image: string): string[] {
  const out: string[] = [];
  let devs: string[] = [];
  try {
    devs = fs.readdirSync('/sys/block').filter((d) => d.startsWith('loop'));
  } catch {
    return out;
  }
  for (const d of devs) {
    try {
      const backing = fs.readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').trim();
      // A removed image reads "<path> (deleted)".
      if (backing === image || backing === `${image} (deleted)`) out.push(`/dev/${d}`);
    } catch {
      // not configured
    }
  }
  return out;
}

/**
 * The block device a path's filesystem is on, as "major:minor" (the form
 * cgroup I/O rules and /sys/class/bdi name it): Linux's dev_t encoding.
 */
export function deviceOf(p: string): string {
  const dev = fs.statSync(p, { bigint: true }).dev;
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * Bounds the dirty pages of block device `dev` to `bytes`, enforced even
 * while the host as a whole is far below its dirty limits (strict_limit):
 * a writer to a disk whose writeback is throttled (cgroups.ts setDiskRules)
 * is then paced at that rate, instead of filling its memory cgroup with
 * dirty pages that drain slowly (v1 memory cgroups do not throttle dirtying)
 * or the host's dirty budget that every writer shares. Linux >= 6.2; false
 * when the kernel lacks the knobs.
 */
export function boundDirtyPages(dev: string, bytes: number): boolean {
  const bdi = `/sys/class/bdi/${dev}`;
  if (!fs.existsSync(`${bdi}/strict_limit`) || !fs.existsSync(`${bdi}/max_bytes`)) return false;
  try {
    // The kernel keeps it as a share of the host's dirty limit: more than
    // that limit (a host with little memory, or vm.dirty_bytes set low) is
    // EINVAL. Then the device is not bounded (v1: its flusher writes are not
    // throttled either), rather than failing every create.
    fs.writeFileSync(`${bdi}/max_bytes`, String(bytes));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw SandboxError.wrap(`write ${bytes} to ${bdi}/max_bytes`, err, 'scratch');
  }
  writeKnob(`${bdi}/strict_limit`, '1');
  return true;
}

/** The kernel's defaults again (the loop device outlives the session). */
export function unboundDirtyPages(dev: string): void {
  const bdi = `/sys/class/bdi/${dev}`;
  if (fs.existsSync(`${bdi}/strict_limit`)) writeKnob(`${bdi}/strict_limit`, '0');
  if (fs.existsSync(`${bdi}/max_ratio`)) writeKnob(`${bdi}/max_ratio`, '100');
}

function writeKnob(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    throw SandboxError.wrap(`write ${value} to ${file}`, err, 'scratch');
  }
}

/** Whether this kernel can bound a device's dirty pages (boundDirtyPages). */
export function dirtyBoundSupported(): boolean {
  try {
    const any = fs.readdirSync('/sys/class/bdi')[0];
    return any !== undefined && fs.existsSync(`/sys/class/bdi/${any}/strict_limit`);
  } catch {
    return false;
  }
}

/** Whether loop devices can be had: /dev/loop-control opens (the kernel loads `loop` on demand). */
export function loopControlStatus(): { ok: boolean; detail: string } {
  try {
    fs.closeSync(fs.openSync('/dev/loop-control', 'r+'));
    return { ok: true, detail: '/dev/loop-control' };
  } catch (err) {
    return { ok: false, detail: `/dev/loop-control: ${(err as NodeJS.ErrnoException).code}` };
  }
}

/**
 * The dirs every session disk holds, with their modes: the overlay's upper
 * dir (the sandbox's `/`), its work dir, `/tmp` and `/lab`. A template holds
 * them so; manager.ts makeScratch gives them to the session's root.
 */
export const DISK_DIRS: Readonly<Record<string, number>> = {
  upper: 0o755,
  work: 0o700,
  tmp: 0o1777,
  lab: 0o755,
};

/**
 * A new sparse image of `bytes` with `inodes` inodes, formatted ext4, holding
 * the empty DISK_DIRS (mke2fs -d): a fresh mount's first mkdir costs ~1 ms
 * (the first write to its bitmaps), paid here once per template instead of
 * in every create. Root's; the caller sets owners.
 */
export async function makeDisk(file: string, bytes: number, inodes: number): Promise<void> {
  const mke2fs = mke2fsPath();
  if (!mke2fs)
    throw new SandboxError('scratch: mke2fs not found', {
      step: 'scratch',
      code: 'ENOENT',
      path: '/usr/sbin/mke2fs',
      hint: 'install e2fsprogs (apt-get install e2fsprogs); `underlay doctor` checks it',
    });
  const fd = fs.openSync(file, 'wx', 0o600);
  let dirs: string | undefined;
  try {
    try {
      fs.ftruncateSync(fd, bytes);
    } finally {
      fs.closeSync(fd);
    }
    dirs = fs.mkdtempSync(`${file}.dirs-`);
    for (const [d, mode] of Object.entries(DISK_DIRS)) {
      fs.mkdirSync(path.join(dirs, d));
      fs.chmodSync(path.join(dirs, d), mode); // not the umask's
    }
    const args = (extended: string) => [
      '-q',
      '-F',
      ...['-t', 'ext4', '-m', '0', '-b', '4096', '-N', String(inodes), '-L', 'underlay'],
      // Inode tables and journal are holes in a new sparse file: nothing to zero.
      ...['-E', `lazy_itable_init=1,lazy_journal_init=1,nodiscard${extended}`],
      // No blocks reserved for online growth (the disk never grows): they
      // cost mke2fs 40% of its time (12 -> 7 ms for 1 GiB here, spawn included).
      '-O',
      bytes < JOURNAL_FROM ? '^resize_inode,^has_journal' : '^resize_inode',
      ...['-d', dirs as string],
      file,
      `${Math.floor(bytes / 1024)}k`,
    ];
    // no_copy_xattrs: a default ACL or a security label on the state dir
    // must not reach students' dirs. mke2fs before 1.47 lacks the option
    // (and an -E it does not know fails the run): then without it.
    const first = await runMke2fs(mke2fs, args(',no_copy_xattrs'));
    const failed = /no_copy_xattrs/.test(first.stderr) ? await runMke2fs(mke2fs, args('')) : first;
    if (failed.err) {
      throw new SandboxError(
        `scratch: mke2fs ${file} failed: ${failed.stderr.trim() || failed.err.message}`,
        {
          step: 'scratch',
          path: file,
          detail: `${Math.round(bytes / MiB)}M, ${inodes} inodes`,
          cause: failed.err,
        },
      );
    }
  } catch (err) {
    fs.rmSync(file, { force: true });
    throw err;
  } finally {
    if (dirs) fs.rmSync(dirs, { recursive: true, force: true });
  }
}

function runMke2fs(mke2fs: string, args: string[]): Promise<{ err: Error | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(mke2fs, args, { timeout: 60_000 }, (err, _stdout, stderr) =>
      resolve({ err, stderr: String(stderr) }),
    );
  });
}

/** Bump when makeDisk's format changes: templates of an older recipe are not reused. */
export const TEMPLATE_RECIPE = 3;

/** Whether a template file name (`template-...-r<recipe>.ext4`) is of today's recipe. */
export function templateIsCurrent(name: string): boolean {
  return name.endsWith(`-r${TEMPLATE_RECIPE}.ext4`);
}

/**
 * New session disks as sparse copies of a formatted template per size and
 * inode count (`template-<bytes>-<inodes>-r<recipe>.ext4` in the disks dir,
 * made by mke2fs on first use): a copy of the ~0.6 MB of data in a 1 GiB
 * image takes ~1 ms (native copySparse), mke2fs ~7 ms and a spawn. The copies
 * share the template's filesystem UUID, which nothing here relies on.
 */
export class DiskMaker {
  private readonly making = new Map<string, Promise<string>>();

  constructor(
    private readonly dir: string,
    private readonly copy: (src: string, dst: string) => void,
  ) {}

  async make(file: string, bytes: number, inodes: number): Promise<void> {
    this.copy(await this.template(bytes, inodes), file);
  }

  private template(bytes: number, inodes: number): Promise<string> {
    const name = path.join(this.dir, `template-${bytes}-${inodes}-r${TEMPLATE_RECIPE}.ext4`);
    if (fs.existsSync(name)) return Promise.resolve(name);
    let p = this.making.get(name);
    if (!p) {
      // Several processes may make it at once (the server, the CLI): each
      // formats its own temporary file; the renames are atomic.
      const tmp = `${name}.tmp-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
      p = makeDisk(tmp, bytes, inodes)
        .then(() => {
          fs.renameSync(tmp, name);
          return name;
        })
        .finally(() => this.making.delete(name));
      this.making.set(name, p);
    }
    return p;
  }
}

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
 * A new sparse image of `bytes` with `inodes` inodes, formatted ext4. Its
 * root dir belongs to host root; the caller makes the dirs it hands out.
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
  try {
    fs.ftruncateSync(fd, bytes);
  } finally {
    fs.closeSync(fd);
  }
  const args = [
    '-q',
    '-F',
    ...['-t', 'ext4', '-m', '0', '-b', '4096', '-N', String(inodes), '-L', 'underlay'],
    // Inode tables and journal are holes in a new sparse file: nothing to zero.
    ...['-E', 'lazy_itable_init=1,lazy_journal_init=1,nodiscard'],
    // No blocks reserved for online growth (the disk never grows): they
    // cost mke2fs 40% of its time (12 -> 7 ms for 1 GiB here, spawn included).
    '-O',
    bytes < JOURNAL_FROM ? '^resize_inode,^has_journal' : '^resize_inode',
    file,
    `${Math.floor(bytes / 1024)}k`,
  ];
  await new Promise<void>((resolve, reject) => {
    execFile(mke2fs, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      fs.rmSync(file, { force: true });
      reject(
        new SandboxError(`scratch: mke2fs ${file} failed: ${stderr.trim() || err.message}`, {
          step: 'scratch',
          path: file,
          detail: `${Math.round(bytes / MiB)}M, ${inodes} inodes`,
          cause: err,
        }),
      );
    });
  });
}

/**
 * Formatted spare disks of the default size, made ahead in the background,
 * so a create only renames one into place instead of running mke2fs (7 ms
 * of a ~20 ms create). Files in the disks dir: `spare-<bytes>-<inodes>-<rand>.ext4`
 * when ready, `.tmp` while mke2fs runs. Several processes may share the dir
 * (the server, the CLI): a rename is atomic, so each spare goes to one of them.
 */
export class DiskPool {
  private making = 0;
  private readonly prefix: string;

  constructor(
    private readonly dir: string,
    private readonly bytes: number,
    private readonly inodes: number,
    private readonly want: number,
    private readonly onError: (err: unknown) => void,
  ) {
    this.prefix = `spare-${bytes}-${inodes}-`;
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A spare whose mke2fs was cut short (a crash): old enough to be nobody's.
    for (const f of fs.readdirSync(dir)) {
      if (!f.startsWith('spare-') || !f.endsWith('.tmp')) continue;
      const p = path.join(dir, f);
      try {
        if (Date.now() - fs.statSync(p).mtimeMs > 120_000) fs.rmSync(p, { force: true });
      } catch {
        // gone meanwhile
      }
    }
  }

  private spares(): string[] {
    return fs.readdirSync(this.dir).filter((f) => f.startsWith(this.prefix) && f.endsWith('.ext4'));
  }

  /** Moves a ready spare of this size to `target`; false if there is none (or the size differs). */
  take(target: string, bytes: number, inodes: number): boolean {
    if (bytes !== this.bytes || inodes !== this.inodes) return false;
    let taken = false;
    for (const f of this.spares()) {
      try {
        fs.renameSync(path.join(this.dir, f), target);
        taken = true;
        break;
      } catch {
        // another process took it first
      }
    }
    // Later, not now: spawning mke2fs blocks this thread for 2-3 ms, and a
    // burst of creates should not pay that each time.
    clearTimeout(this.later);
    this.later = setTimeout(() => this.refill(), 250);
    this.later.unref();
    return taken;
  }
  private later: NodeJS.Timeout | undefined;

  /** Starts making spares up to the wanted count (never more than one at a time). */
  refill(): void {
    if (this.making > 0 || this.spares().length >= this.want) return;
    this.making++;
    const name = `${this.prefix}${crypto.randomBytes(4).toString('hex')}`;
    const tmp = path.join(this.dir, `${name}.tmp`);
    makeDisk(tmp, this.bytes, this.inodes)
      .then(() => fs.renameSync(tmp, path.join(this.dir, `${name}.ext4`)))
      .catch((err: unknown) => {
        fs.rmSync(tmp, { force: true });
        this.onError(err);
      })
      .finally(() => {
        this.making--;
        this.refill();
      });
  }
}

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
import * as fs from 'node:fs';
import { SandboxError } from './errors';

const MiB = 1024 * 1024;
/** Below this, no journal: mke2fs would give it 4 MiB of a small disk. */
const JOURNAL_FROM = 64 * MiB;

/** mke2fs from e2fsprogs (Debian: /usr/sbin, which a service's PATH may lack). */
export function mke2fsPath(): string | undefined {
  return ['/usr/sbin/mke2fs', '/sbin/mke2fs'].find((p) => fs.existsSync(p));
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
    ...(bytes < JOURNAL_FROM ? ['-O', '^has_journal'] : []),
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

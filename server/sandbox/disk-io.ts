/**
 * A session disk's I/O limits as its record names them
 * (docs/sandbox.md#disk-bandwidth): the loop device's dirty-page bound
 * (disk.ts) and the cgroup rules (cgroups.ts), set together and lifted
 * together, by the create, an adopting server and any teardown.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SandboxRecord } from '../store/store';
import { liftDiskRules, setDiskRules } from './cgroups';
import { boundDirtyPages, unboundDirtyPages } from './disk';

export type DiskIoRecord = NonNullable<SandboxRecord['resources']['diskIo']>;

/** Sets them; idempotent. */
export function applyDiskIo(r: SandboxRecord, io: DiskIoRecord): void {
  const bounded = boundDirtyPages(io.dev, io.dirtyBytes);
  setDiskRules(r.resources.cgroupMode, r.resources.cgroupDirs, io, bounded);
}

/**
 * Lifts them, if the device is still this record's disk's: after a reboot
 * or a lost mount the same loop device may be another's, whose limits are
 * not ours to lift.
 */
export function liftDiskIo(r: SandboxRecord): void {
  const io = r.resources.diskIo;
  if (!io || !r.resources.disk || !backedBy(io.dev, r.resources.disk)) return;
  liftDiskRules(r.resources.cgroupMode, r.resources.cgroupDirs, io.dev);
  unboundDirtyPages(io.dev);
}

function backedBy(dev: string, image: string): boolean {
  let backing: string;
  try {
    backing = fs.readFileSync(`/sys/dev/block/${dev}/loop/backing_file`, 'utf8').trim();
  } catch {
    return false; // not a loop device, or not attached
  }
  // The kernel names the file by its real path; the state dir may be reached through a symlink.
  let real = image;
  try {
    real = path.join(fs.realpathSync(path.dirname(image)), path.basename(image));
  } catch {
    // its dir is gone: compare as recorded
  }
  return [image, real].some((p) => backing === p || backing === `${p} (deleted)`);
}

/**
 * The host's open-file table (docs/sandbox.md#the-hosts-open-file-table).
 *
 * `fs.file-max` is one count for the whole host: once the open files of
 * every process reach it, any process that is not host root gets ENFILE
 * (every other student's shell, command and check). Each open file is
 * charged to its sandbox's memory cgroup (~230 B of `struct file`), so the
 * memory limits bound what sandboxes can hold, but only if the table is at
 * least as large as what memory can hold. The kernel sizes it at boot for
 * ~1 KiB of RAM per file (2.47M on a 24 GiB host), which a red team filled
 * to 84 % from one sandbox at its default limits. systemd raises it to
 * LONG_MAX at boot for this reason (so Debian's default hosts are fine);
 * hosts booted without systemd (small VMs, a container's host) keep the
 * kernel's figure, and this raises it the same way.
 */
import * as fs from 'node:fs';
import type { Logger } from '../util/logger';

/** What systemd writes at boot: the largest value the kernel takes (LONG_MAX). */
export const FILE_MAX_UNBOUNDED = '9223372036854775807';

/** The fewest bytes of charged kernel memory an open file costs (a `struct file` is ~230 B). */
const MIN_FILE_BYTES = 128;

/**
 * The table size below which memory no longer bounds it: as many files as
 * the host's whole memory could hold at MIN_FILE_BYTES each.
 */
export function fileMaxNeeded(memTotalBytes: number): number {
  return Math.ceil(memTotalBytes / MIN_FILE_BYTES);
}

/**
 * Raises `fs.file-max` to FILE_MAX_UNBOUNDED when it is below
 * fileMaxNeeded (a host setting, logged; files stay bounded per sandbox
 * by its memory limit). Returns what it did, or why not.
 */
export function ensureFileTable(
  log: Logger,
  procDir = '/proc',
  /** UNDERLAY_KEEP_FILE_MAX: the operator's figure stays; a small one is only warned about. */
  keep = false,
): { raised?: { from: number; to: string }; kept?: string; error?: string } {
  const fileMax = path(procDir, 'sys/fs/file-max');
  try {
    const now = Number(fs.readFileSync(fileMax, 'utf8').trim());
    const mem = /^MemTotal:\s+(\d+) kB/m.exec(fs.readFileSync(path(procDir, 'meminfo'), 'utf8'));
    const needed = fileMaxNeeded(Number(mem?.[1] ?? 0) * 1024);
    if (!(now < needed)) return {};
    // Booted with cgroup.memory=nokmem, the kernel charges open files to no
    // cgroup: the table is then the only bound, so it stays.
    const cmdline = readOr(path(procDir, 'cmdline'));
    const kept = keep
      ? 'UNDERLAY_KEEP_FILE_MAX=1'
      : /(^|\s)cgroup\.memory=[^\s]*nokmem/.test(cmdline)
        ? 'cgroup.memory=nokmem: open files are charged to no sandbox'
        : undefined;
    if (kept) {
      log.warn("the host's open-file table (fs.file-max) is small enough for sandboxes to fill", {
        fileMax: now,
        keptBecause: kept,
      });
      return { kept };
    }
    fs.writeFileSync(fileMax, FILE_MAX_UNBOUNDED);
    log.info("raised the host's open-file table (fs.file-max), as systemd does at boot", {
      from: now,
      to: FILE_MAX_UNBOUNDED,
      why: 'below what memory can hold: two sandboxes could fill it and every other one would get ENFILE',
    });
    return { raised: { from: now, to: FILE_MAX_UNBOUNDED } };
  } catch (err) {
    const error = (err as Error).message;
    log.warn("cannot raise the host's open-file table (fs.file-max)", {
      error,
      hint: `sandboxes could fill it: set fs.file-max=${FILE_MAX_UNBOUNDED} (sysctl) on the host`,
    });
    return { error };
  }
}

const path = (dir: string, rel: string) => `${dir}/${rel}`;

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

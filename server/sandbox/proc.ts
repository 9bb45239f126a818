/**
 * Reading processes from /proc: the one parser of /proc/<pid>/stat, process
 * identity (pid + start time, so a recycled pid is never mistaken for ours),
 * and namespace inodes.
 */
import * as fs from 'node:fs';

export interface ProcStat {
  /** R, S, D, Z (zombie), X (dead), T, ... */
  state: string;
  ppid: number;
  /** Start time in clock ticks since boot: with the pid, a process's identity. */
  start: number;
}

/** /proc/<pid>/stat, or undefined if the process is gone. */
export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseStat(text);
}

function parseStat(text: string): ProcStat {
  // comm (field 2) may contain spaces and parens: fields resume after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0] ?? '', ppid: Number(rest[1]), start: Number(rest[19]) };
}

/** A process's start time in clock ticks (its identity beside the pid). */
export function processStartTime(pid: number): number | undefined {
  return readStat(pid)?.start;
}

/**
 * The process lives: same pid, same start time, and not a zombie (a killed
 * process may wait long for its reaper, and is not alive in any useful sense).
 */
export function procAlive(pid: number | null, start: number | null): boolean {
  if (pid === null || start === null) return false;
  const st = readStat(pid);
  return !!st && st.start === start && st.state !== 'Z' && st.state !== 'X';
}

/** The inode of a process's namespace of one kind ("user", "pid", ...). */
export function nsInode(pid: number, kind: string): number {
  return fs.statSync(`/proc/${pid}/ns/${kind}`).ino;
}

/**
 * This process's children, read from /proc/self/task/<tid>/children for every
 * thread (CONFIG_PROC_CHILDREN, on in Debian's and the common distros'
 * kernels). Without it, falls back to scanning /proc for PPid = us.
 */
export function childPids(): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = fs.readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  for (const tid of tids) {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && tid === tids[0])
        return scanChildren();
      continue; // the thread ended meanwhile
    }
    for (const p of text.split(' ')) if (p.trim()) out.push(Number(p));
  }
  return out;
}

function scanChildren(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (st?.ppid === process.pid) out.push(Number(d));
  }
  return out;
}

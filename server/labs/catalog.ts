/**
 * The labs a server offers, reloaded on change in dev mode. A broken lab
 * never takes the server down: its problems are kept and served instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { effectiveStep, formatProblem, loadLabs, type LoadedLab } from './loader';
import type { CgroupMode } from '../sandbox/index';
import type { Logger } from '../util/logger';

export class LabCatalog {
  labs = new Map<string, LoadedLab>();
  problems: string[] = [];
  /** Dev mode: one watcher per directory under the labs dir. */
  private watchers = new Map<string, fs.FSWatcher>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly dir: string,
    /** The host's cgroup version: which variant of a step applies, and which labs can run. */
    readonly mode: CgroupMode,
    private readonly log: Logger,
  ) {
    this.reload();
  }

  reload(): void {
    const { labs, problems } = loadLabs([this.dir]);
    this.labs = new Map(labs.map((l) => [l.lab.metadata.id, l]));
    this.problems = problems.map(formatProblem);
    for (const p of this.problems) this.log.warn('lab problem', { problem: p });
    this.log.info('labs loaded', { labs: [...this.labs.keys()], problems: this.problems.length });
  }

  /**
   * The near miss of a step whose `says` a check's failure message contains
   * (case-insensitive), as it applies on this host's cgroup version.
   */
  nearMissOf(lab: string, step: string, message: string): string | undefined {
    const st = this.labs.get(lab)?.lab.steps.find((s) => s.id === step);
    if (!st) return undefined;
    const m = message.toLowerCase();
    return effectiveStep(st, this.mode).nearMisses.find(
      (nm) => nm.says && m.includes(nm.says.toLowerCase()),
    )?.name;
  }

  /**
   * Dev mode: reload (debounced) whenever a file under the labs dir changes.
   *
   * One plain watcher per directory rather than `fs.watch(dir, {recursive})`:
   * on Linux, Node 20 emulates the recursive mode and walks a new directory
   * asynchronously, so a file written into a directory just created can be
   * missed for good (nodejs/node#48437; a lab copied in as a folder is
   * exactly that). Here each reload first adds watchers for directories that
   * appeared, then reads the tree: a file written before its directory's
   * watcher existed is read by that reload, one written after raises an event.
   */
  watch(): void {
    this.syncWatchers();
  }

  private syncWatchers(): void {
    const seen = new Set<string>();
    const walk = (dir: string) => {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        return; // gone meanwhile: its parent's event brings another reload
      }
      seen.add(dir);
      if (!this.watchers.has(dir)) {
        try {
          const w = fs.watch(dir, () => this.changed());
          w.on('error', () => this.unwatch(dir));
          this.watchers.set(dir, w);
        } catch (err) {
          if (dir === this.dir)
            this.log.warn('cannot watch labs', { dir: this.dir, error: String(err) });
        }
      }
      for (const e of entries)
        if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules')
          walk(path.join(dir, e.name));
    };
    walk(this.dir);
    for (const dir of [...this.watchers.keys()]) if (!seen.has(dir)) this.unwatch(dir);
  }

  private unwatch(dir: string): void {
    this.watchers.get(dir)?.close();
    this.watchers.delete(dir);
  }

  private changed(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.syncWatchers();
      this.reload();
    }, 150);
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
    clearTimeout(this.timer);
  }
}

/**
 * The labs a server offers, reloaded on change in dev mode. A broken lab
 * never takes the server down: its problems are kept and served instead.
 */
import * as fs from 'node:fs';
import { effectiveStep, formatProblem, loadLabs, type LoadedLab } from './loader';
import type { CgroupMode } from '../sandbox/index';
import type { Logger } from '../util/logger';

export class LabCatalog {
  labs = new Map<string, LoadedLab>();
  problems: string[] = [];
  private watchers: fs.FSWatcher[] = [];
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

  /** Dev mode: reload (debounced) whenever a file under the labs dir changes. */
  watch(): void {
    try {
      this.watchers.push(
        fs.watch(this.dir, { recursive: true }, () => {
          clearTimeout(this.timer);
          this.timer = setTimeout(() => this.reload(), 150);
        }),
      );
    } catch (err) {
      this.log.warn('cannot watch labs', { dir: this.dir, error: String(err) });
    }
  }

  close(): void {
    for (const w of this.watchers) w.close();
    clearTimeout(this.timer);
  }
}

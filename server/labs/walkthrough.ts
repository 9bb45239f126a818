/**
 * `underlay test --walkthrough`: does a lab the way a student does - the
 * runnable code blocks of each step's text are typed, line by line, into the
 * named terminals of a real session (what the Run button does), and then the
 * step's check must pass. It proves every command in the lab text works as
 * written. Knowledge checks get the answer the step's solution prints.
 */
import { effectiveStep, type LoadedLab } from './loader';
import { labSandboxOptions, prepareSandbox, runScript, stepEnv } from './runtime';
import type { Lab } from './schema';
import type { CgroupMode, Sandbox } from '../sandbox/index';
import type { Session, SessionManager } from '../sessions/session-manager';
import type { Terminal } from '../terminals/terminal';

export interface CodeBlock {
  terminal: string;
  code: string;
}

/** The runnable blocks of a step's markdown: ```sh (or bash/shell) fences; `terminal=NAME` picks the terminal. */
export function codeBlocks(markdown: string, defaultTerminal: string): CodeBlock[] {
  const out: CodeBlock[] = [];
  const re = /^```(sh|bash|shell|console)([^\n]*)\n([\s\S]*?)^```\s*$/gm;
  for (const m of markdown.matchAll(re)) {
    const info = m[2] ?? '';
    if (/\bnorun\b/.test(info)) continue;
    out.push({
      terminal: /\bterminal=([\w-]+)/.exec(info)?.[1] ?? defaultTerminal,
      code: (m[3] ?? '').replace(/\n$/, ''),
    });
  }
  return out;
}

export interface WalkStep {
  id: string;
  ok: boolean;
  ms: number;
  detail: string;
  /** What the terminals showed while the step's blocks ran (tail), for failures. */
  transcript: string;
}

export interface WalkResult {
  id: string;
  ok: boolean;
  ms: number;
  steps: WalkStep[];
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\r/g;

export class Typist {
  private out = '';
  private waiters: (() => void)[] = [];
  private seq = 0;

  constructor(private readonly term: Terminal) {
    // Reads everything at once: acknowledge on receipt (the replay before
    // attach returns is acknowledged right after).
    const at: { token?: number } = {};
    let early = 0;
    at.token = term.attach((_offset, data) => {
      this.out += data.toString('utf8');
      if (this.out.length > 1 << 20) this.out = this.out.slice(-(1 << 19));
      for (const w of this.waiters.splice(0)) w();
      if (at.token === undefined) early += data.length;
      else term.ack(at.token, data.length);
    }, 0).token;
    if (early) term.ack(at.token, early);
    this.token = at.token;
  }

  private token: number;

  /**
   * Types `clear`, not waiting for it: after a replay the student gets a
   * clean screen at a prompt, not the typed blocks and their sync markers.
   */
  async clear(): Promise<void> {
    await this.term.input('clear\r');
  }

  /** Stops reading (the terminal goes on for whoever else is attached). */
  close(): void {
    this.term.detach(this.token);
  }

  tail(n = 1500): string {
    return this.out.replace(ANSI, '').slice(-n);
  }

  /** Types the lines, then a marker command, and waits for the marker's output. */
  async type(code: string, timeoutMs: number): Promise<boolean> {
    const marker = `UL${process.pid}x${++this.seq}`;
    for (const line of code.split('\n')) {
      await this.term.input(`${line}\r`);
    }
    // printf is a builtin: it works even in a shell that can no longer fork.
    await this.term.input(`printf '%s_%s\\n' ${marker} done\r`);
    const want = `${marker}_done`;
    const deadline = Date.now() + timeoutMs;
    while (
      !this.out
        .replace(ANSI, '')
        .split('\n')
        .some((l) => l.trim() === want)
    ) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return true;
  }
}

export async function walkLab(
  loaded: LoadedLab,
  sessions: SessionManager,
  mode: CgroupMode,
  opts: { onStep?: (s: WalkStep) => void } = {},
): Promise<WalkResult> {
  const { lab } = loaded;
  const t0 = Date.now();
  const result: WalkResult = { id: lab.metadata.id, ok: true, ms: 0, steps: [] };
  const created = await sessions.create({
    ...labSandboxOptions(lab),
    prepare: (sb) => prepareSandbox(loaded, sb),
  });
  const s = sessions.get(created.session) as Session;
  try {
    const typists = new Map<string, Typist>();
    for (const t of lab.sandbox.terminals) {
      const term = sessions.openTerminal(s, { name: t.name, cols: 120, rows: 40 });
      typists.set(t.name, new Typist(term));
    }
    const steps = await replaySteps(loaded, s.sandbox, typists, mode, lab.steps.length, opts);
    result.steps.push(...steps.steps);
    result.ok = steps.ok;
  } finally {
    await sessions.end(s.id);
    result.ms = Date.now() - t0;
  }
  return result;
}

/**
 * Types the runnable blocks of the first `count` steps into the terminals
 * (`typists`, by name), as a student pressing Run would, each step's check
 * after its blocks (a knowledge check answered with what the solution
 * prints); stops at the first step that fails. `underlay test
 * --walkthrough` and "Start step over" (which thus leaves the terminals
 * where the student's own would be: inside the namespaces, with `$!` set).
 */
export async function replaySteps(
  loaded: LoadedLab,
  sandbox: Sandbox,
  typists: Map<string, Typist>,
  mode: CgroupMode,
  count: number,
  opts: { onStep?: (s: WalkStep) => void } = {},
): Promise<{ ok: boolean; steps: WalkStep[]; values: Map<string, string> }> {
  const { lab } = loaded;
  const done: WalkStep[] = [];
  const first = lab.sandbox.terminals[0]?.name ?? 'T1';
  const outs = new Map<string, string>();
  for (const raw of lab.steps.slice(0, count)) {
    const step = effectiveStep(raw as Lab['steps'][number], mode);
    const s0 = Date.now();
    const ws: WalkStep = { id: step.id, ok: true, ms: 0, detail: '', transcript: '' };
    const touched = new Set<string>();
    for (const b of codeBlocks(step.instructions ?? '', first)) {
      const ty = typists.get(b.terminal);
      if (!ty) {
        ws.ok = false;
        ws.detail = `no terminal ${b.terminal} to type into`;
        break;
      }
      touched.add(b.terminal);
      if (!(await ty.type(b.code, 30_000))) {
        ws.ok = false;
        ws.detail = `a code block in ${b.terminal} did not finish within 30 s:\n${b.code}`;
        break;
      }
    }
    if (ws.ok && step.check) {
      const env = stepEnv(outs);
      if (step.check.input) {
        const a = await runScript(sandbox, step.solution as string, {
          timeoutS: 60,
          env,
          trusted: false,
          lib: lab.lib,
        });
        env.ANSWER = a.message;
      }
      const r = await runScript(sandbox, step.check.script, {
        timeoutS: step.check.timeout,
        env,
        trusted: true,
        lib: lab.lib,
      });
      if (r.code === 0) outs.set(step.id, r.value ?? r.message);
      else {
        ws.ok = false;
        ws.detail = `the check failed after typing the step's code blocks: ${r.output}`;
      }
    }
    if (!ws.ok)
      ws.transcript = [...touched]
        .map((t) => `--- ${t} ---\n${(typists.get(t) as Typist).tail()}`)
        .join('\n');
    ws.ms = Date.now() - s0;
    done.push(ws);
    opts.onStep?.(ws);
    if (!ws.ok) return { ok: false, steps: done, values: outs };
  }
  return { ok: true, steps: done, values: outs };
}

/**
 * The lab runtime that production uses: running a check or hint script in a
 * student's sandbox (with the check library), laying a lab's files into a
 * fresh sandbox and running its setup, the sandbox options a lab asks for,
 * and whether this host can run a lab at all. Check, the lab API, lab
 * sessions and `underlay test` all use this one module.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseSize, timeScale } from '../config';
import { SandboxError, type CgroupMode, type Sandbox } from '../sandbox/index';
import { insideLab, type LoadedLab } from './loader';
import type { Lab } from './schema';

export const CHECK_LIB = fs.readFileSync(
  [
    path.join(__dirname, 'check-lib.sh'),
    path.resolve(__dirname, '..', '..', '..', 'server', 'labs', 'check-lib.sh'),
  ].find((p) => fs.existsSync(p)) as string,
  'utf8',
);

/** The env a script sees: earlier steps' messages as $STEP_<id>_OUT. */
export function stepEnv(outs: Map<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [id, out] of outs) env[`STEP_${id.replace(/-/g, '_')}_OUT`] = out;
  return env;
}

/**
 * A check's processes run as sandbox root, so the student can signal them:
 * killing the `$(...)` of `left=$(procs_in_pidns X); [ -z "$left" ] && pass`
 * made "nothing left" pass. Any command a check runs that ends by a signal
 * (status >= 128: killed, or bash's 254 after fork retries) fails the check
 * instead. Conditions (`a || b`, `if`) are exempt, as bash exempts them from
 * ERR; a killed part of a pipeline other than the last is not seen.
 */
const KILLED_FAILS =
  'set -E; trap \'_rc=$?; [ $_rc -ge 128 ] && fail "part of the check was interrupted (status $_rc): check again"\' ERR\n';

/** The longest check message or recorded value kept (the rest is cut, marked with an ellipsis). */
export const MAX_MESSAGE_CHARS = 1000;

export function clipLine(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

export async function runScript(
  sb: Sandbox,
  script: string,
  opts: {
    timeoutS: number;
    env: Record<string, string>;
    /**
     * Checks and hints: the image's read-only toolset and fresh /proc and
     * cgroup mounts, so nothing the student put in PATH, /usr or /etc (nor a
     * ptrace) can forge the answer (docs/sandbox.md#trusted-checks).
     * Setup and solutions run as the student would (false).
     */
    trusted: boolean;
    /** The lab's own shared bash (`lib:`), sourced after the check library. */
    lib?: string;
  },
): Promise<{
  code: number;
  message: string;
  output: string;
  timedOut: boolean;
  /** What a passing check gave later steps with `pass_value` (else they read its message). */
  value?: string;
}> {
  const r = await sb.exec(
    [
      'bash',
      '-c',
      `${CHECK_LIB}\n${opts.lib ? `${opts.lib}\n` : ''}${opts.trusted ? KILLED_FAILS : ''}${script}`,
    ],
    {
      timeoutMs: opts.timeoutS * 1000 * timeScale(),
      maxBytes: 256 * 1024,
      env: opts.env,
      trusted: opts.trusted,
    },
  );
  const lines = r.stdout.split('\n').filter((l) => l.trim() !== '');
  // pass_value prints its value on the line right before the message.
  const marked = lines.at(-2)?.startsWith(VALUE_MARK) && r.code === 0 && !r.timedOut;
  const value = marked
    ? clipLine((lines.at(-2) as string).slice(VALUE_MARK.length), MAX_MESSAGE_CHARS)
    : undefined;
  // The tail of the output, bounded in lines and in characters (one line can be megabytes).
  let output = `${r.stdout}${r.stderr}`
    .split('\n')
    .filter((l) => !l.startsWith(VALUE_MARK))
    .slice(-15)
    .join('\n')
    .trim();
  if (output.length > 2000) output = `…${output.slice(-2000)}`;
  return {
    code: r.timedOut ? 124 : r.code,
    // A check's verdict is one line; a script that prints a 200 KiB line
    // would otherwise store it with every attempt.
    message: clipLine(lines.at(-1) ?? '', MAX_MESSAGE_CHARS),
    output:
      (r.timedOut ? `[killed after ${opts.timeoutS * timeScale()}s] ` : '') +
      (r.truncated ? '[output truncated] ' : '') +
      output,
    timedOut: r.timedOut,
    ...(value !== undefined ? { value } : {}),
  };
}

const VALUE_MARK = '::underlay-value::';

const MAX_FILES_BYTES = 8 * 1024 * 1024;

/** The lab's `sandbox.files` as (sandbox path, mode, content) triples; bounded in total size. */
export function labFiles(loaded: LoadedLab): { to: string; mode: string; data: Buffer }[] {
  const out: { to: string; mode: string; data: Buffer }[] = [];
  let total = 0;
  const add = (src: string, dst: string, mode: string | undefined) => {
    // A link inside a shipped folder may not lead out of the lab.
    if (!insideLab(loaded.dir, src))
      throw new SandboxError(
        `sandbox.files of ${loaded.lab.metadata.id}: ${src} leads outside the lab folder`,
        {
          code: 'EACCES',
          step: 'lab-files',
        },
      );
    const st = fs.statSync(src);
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(src).sort())
        add(path.join(src, e), path.posix.join(dst, e), mode);
      return;
    }
    const data = fs.readFileSync(src);
    total += data.length;
    if (total > MAX_FILES_BYTES)
      throw new SandboxError(`sandbox.files of ${loaded.lab.metadata.id} exceed 8 MiB`, {
        code: 'EFBIG',
        step: 'lab-files',
      });
    out.push({ to: dst, mode: mode ?? (st.mode & 0o7777).toString(8), data });
  };
  for (const f of loaded.lab.sandbox.files) add(path.resolve(loaded.dir, f.from), f.to, f.mode);
  return out;
}

/** Lays the lab's files into a fresh sandbox and runs its setup; throws with the output on failure. */
export async function prepareSandbox(loaded: LoadedLab, sb: Sandbox): Promise<void> {
  const { lab } = loaded;
  // One exec per file, the content on stdin (argv would hit E2BIG on big files).
  for (const f of labFiles(loaded)) {
    const r = await sb.exec(
      [
        'sh',
        '-c',
        'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"',
        'sh',
        f.to,
        f.mode,
      ],
      { input: f.data, timeoutMs: 30_000 },
    );
    if (r.code !== 0)
      throw new SandboxError(
        `copying ${f.to} into the sandbox failed (exit ${r.code}): ${r.stderr.trim()}`,
        {
          step: 'lab-files',
        },
      );
  }
  if (lab.setup) {
    const r = await runScript(sb, lab.setup, {
      timeoutS: 60,
      env: {},
      trusted: false,
      lib: lab.lib,
    });
    if (r.code !== 0)
      throw new SandboxError(`the lab's setup exited ${r.code}: ${r.output}`, {
        step: 'lab-setup',
        hint: 'Run `underlay test` on this lab to see the setup fail in isolation.',
      });
  }
}

/** Sandbox options for a lab. */
export function labSandboxOptions(lab: Lab) {
  return {
    hostname: lab.sandbox.hostname,
    packages: lab.sandbox.packages,
    limits: {
      ...(lab.sandbox.memory ? { memoryBytes: parseSize(lab.sandbox.memory) as number } : {}),
      ...(lab.sandbox.pids ? { pids: lab.sandbox.pids } : {}),
      ...(lab.sandbox.cpus ? { cpus: lab.sandbox.cpus } : {}),
    },
  };
}

export function notApplicable(lab: Lab, mode: CgroupMode): string | undefined {
  if (lab.requires.cgroup !== 'any' && lab.requires.cgroup !== mode) {
    return `needs cgroup ${lab.requires.cgroup}; this host runs cgroup ${mode}`;
  }
  if (lab.requires.kernel) {
    const [a, b] = lab.requires.kernel.split('.').map(Number) as [number, number];
    const m = /^(\d+)\.(\d+)/.exec(os.release());
    if (m && (Number(m[1]) < a || (Number(m[1]) === a && Number(m[2]) < b)))
      return `needs Linux >= ${lab.requires.kernel}; this host runs ${os.release()}`;
  }
  return undefined;
}

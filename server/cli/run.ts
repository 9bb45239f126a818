/**
 * `underlay sandbox run`: a fresh sandbox, CMD as sandbox root, I/O relayed
 * through pipes (or a pty with -t) - never the CLI's own fds, which would
 * let the sandbox reopen a host file or terminal through /proc/self/fd -
 * then teardown. Exits with CMD's status.
 */
import { spawn } from 'node:child_process';
import * as pty from 'node-pty';
import {
  parseHelperError,
  trackSpawn,
  untrackSpawn,
  type CreateOptions,
  type Sandbox,
  type SandboxManager,
} from '../sandbox/sandbox';

export interface RunOptions extends CreateOptions {
  tty: boolean;
  keep: boolean;
  uid: number;
}

function relayPipes(sb: Sandbox, argv: string[], uid: number): Promise<number> {
  const { file, args } = sb.joinCommand(argv, { setsid: true, uid, gid: uid });
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {} as NodeJS.ProcessEnv,
    });
    trackSpawn(child.pid);
    child.on('exit', () => untrackSpawn(child.pid));
    let firstErr = true;
    let helperError = '';
    child.stdout.pipe(process.stdout, { end: false });
    child.stderr.on('data', (b: Buffer) => {
      // The helper's own failure (exit 125) is a structured record, not
      // output of the command: keep it to report properly.
      if (firstErr && b.toString().startsWith('ERR\t')) helperError = b.toString();
      else process.stderr.write(b);
      firstErr = false;
    });
    const onInput = (b: Buffer) => child.stdin.write(b);
    const onEnd = () => child.stdin.end();
    if (process.stdin.isTTY || !process.stdin.readableEnded) {
      process.stdin.on('data', onInput);
      process.stdin.on('end', onEnd);
    }
    child.stdin.on('error', () => {});
    const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
    const onInt = forward('SIGINT');
    const onTerm = forward('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      process.stdin.off('data', onInput);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (code === 125 && helperError) {
        reject(parseHelperError(helperError, sb.id));
        return;
      }
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : 15));
    });
  });
}

function relayTty(sb: Sandbox, argv: string[], uid: number): Promise<number> {
  const { file, args } = sb.joinCommand(argv, { uid, gid: uid });
  return new Promise((resolve) => {
    const term = pty.spawn(file, args, {
      name: 'xterm-256color',
      cols: process.stdout.columns || 80,
      rows: process.stdout.rows || 24,
      env: {},
    });
    trackSpawn(term.pid);
    const stdin = process.stdin;
    const wasRaw = stdin.isTTY ? stdin.isRaw : false;
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.resume();
    const onInput = (b: Buffer) => term.write(b.toString('utf8'));
    stdin.on('data', onInput);
    term.onData((d) => process.stdout.write(d));
    const onResize = () => term.resize(process.stdout.columns || 80, process.stdout.rows || 24);
    process.stdout.on('resize', onResize);
    term.onExit(({ exitCode, signal }) => {
      untrackSpawn(term.pid);
      stdin.off('data', onInput);
      process.stdout.off('resize', onResize);
      if (stdin.isTTY) stdin.setRawMode(wasRaw);
      stdin.pause();
      resolve(signal ? 128 + signal : exitCode);
    });
  });
}

export async function runInSandbox(
  m: SandboxManager,
  argv: string[],
  opts: RunOptions,
): Promise<number> {
  const sb = await m.create({ ...opts, ownerKind: 'cli' });
  let code = 1;
  try {
    code = opts.tty ? await relayTty(sb, argv, opts.uid) : await relayPipes(sb, argv, opts.uid);
  } finally {
    if (opts.keep) {
      m.detach(sb);
      process.stderr.write(
        `underlay: sandbox ${sb.id} kept (init pid ${sb.initPid}); remove it with: underlay sandbox rm ${sb.id}\n`,
      );
    } else {
      await m.teardown(sb.record);
    }
  }
  return code;
}

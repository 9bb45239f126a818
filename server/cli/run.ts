/**
 * `underlay sandbox run`: a fresh sandbox, CMD as sandbox root, I/O relayed
 * through pipes (or a pty with -t) - never the CLI's own fds, which would
 * let the sandbox reopen a host file or terminal through /proc/self/fd -
 * then teardown. Exits with CMD's status.
 */
import {
  helperFailure,
  type CreateOptions,
  type Sandbox,
  type SandboxManager,
} from '../sandbox/index';
import { exitStatus } from '../util/exit-status';

export interface RunOptions extends CreateOptions {
  tty: boolean;
  keep: boolean;
  uid: number;
}

function relayPipes(sb: Sandbox, argv: string[], uid: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = sb.spawnPipes(argv, { uid, gid: uid });
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
    // Done when CMD exits, not when every holder of its stdout does: a
    // background job (`sleep 300 &`) inherits the pipe and would hold the
    // CLI open until it ended. Let the pipes drain a moment, then close them.
    child.on('exit', () => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 50).unref();
    });
    child.on('close', (code, signal) => {
      process.stdin.off('data', onInput);
      process.stdin.off('end', onEnd);
      process.stdin.pause();
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      const status = exitStatus(code, signal);
      const failure = helperFailure(status, helperError, sb.id);
      if (failure) {
        reject(failure);
        return;
      }
      resolve(status);
    });
  });
}

function relayTty(sb: Sandbox, argv: string[], uid: number): Promise<number> {
  return new Promise((resolve) => {
    const term = sb.spawnPty(argv, {
      uid,
      gid: uid,
      cols: process.stdout.columns || 80,
      rows: process.stdout.rows || 24,
    });
    const stdin = process.stdin;
    const wasRaw = stdin.isTTY ? stdin.isRaw : false;
    if (stdin.isTTY) stdin.setRawMode(true);
    stdin.resume();
    const onInput = (b: Buffer) => term.write(b);
    stdin.on('data', onInput);
    term.onData((d) => process.stdout.write(d));
    const onResize = () => term.resize(process.stdout.columns || 80, process.stdout.rows || 24);
    process.stdout.on('resize', onResize);
    term.onExit((status) => {
      stdin.off('data', onInput);
      process.stdout.off('resize', onResize);
      if (stdin.isTTY) stdin.setRawMode(wasRaw);
      stdin.pause();
      resolve(status);
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
      await m.teardown(sb);
    }
  }
  return code;
}

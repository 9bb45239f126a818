/** A TerminalPty stand-in for Terminal unit tests: feed it output, end it; what it was told is recorded. */
import type { TerminalPty } from '../../server/terminals/terminal';

export function fakePty() {
  let onData: (d: Buffer) => void = () => {};
  let onExit: (status: number) => void = () => {};
  let onDrain: () => void = () => {};
  const calls = {
    writes: [] as string[],
    resizes: [] as [number, number][],
    kills: 0,
    paused: false,
  };
  const pty: TerminalPty = {
    pid: 1,
    pendingInput: 0,
    onData: (f) => (onData = f),
    onExit: (f) => (onExit = f),
    onDrain: (f) => (onDrain = f),
    write: (d) => calls.writes.push(d),
    resize: (c, r) => calls.resizes.push([c, r]),
    kill: () => calls.kills++,
    pause: () => (calls.paused = true),
    resume: () => (calls.paused = false),
  };
  return {
    pty,
    calls,
    data: (s: string) => onData(Buffer.from(s)),
    /** Ends it with a shell-style status (125: the join failed). */
    exit: (status = 125) => onExit(status),
    drain: () => onDrain(),
  };
}

/** A node-pty stand-in for Terminal unit tests: feed it output, end it; writes go nowhere. */
import type { IPty } from 'node-pty';

export function fakePty() {
  let onData: (d: Buffer) => void = () => {};
  let onExit: (e: { exitCode: number; signal?: number }) => void = () => {};
  const pty = {
    pid: 1,
    onData: (f: (d: Buffer) => void) => (onData = f),
    onExit: (f: (e: { exitCode: number; signal?: number }) => void) => (onExit = f),
    write: () => {},
    resize: () => {},
    kill: () => {},
    pause: () => {},
    resume: () => {},
  } as unknown as IPty;
  return {
    pty,
    data: (s: string) => onData(Buffer.from(s)),
    exit: (exitCode = 125) => onExit({ exitCode }),
  };
}

/** A node-pty stand-in for Terminal unit tests: feed it output, end it; what it was told is recorded. */
import type { IPty } from 'node-pty';

export function fakePty() {
  let onData: (d: Buffer) => void = () => {};
  let onExit: (e: { exitCode: number; signal?: number }) => void = () => {};
  const calls = {
    writes: [] as string[],
    resizes: [] as [number, number][],
    kills: 0,
    paused: false,
  };
  const pty = {
    pid: 1,
    onData: (f: (d: Buffer) => void) => (onData = f),
    onExit: (f: (e: { exitCode: number; signal?: number }) => void) => (onExit = f),
    write: (d: string) => calls.writes.push(d),
    resize: (c: number, r: number) => calls.resizes.push([c, r]),
    kill: () => calls.kills++,
    pause: () => (calls.paused = true),
    resume: () => (calls.paused = false),
  } as unknown as IPty;
  return {
    pty,
    calls,
    data: (s: string) => onData(Buffer.from(s)),
    exit: (exitCode = 125, signal?: number) =>
      onExit({ exitCode, ...(signal !== undefined ? { signal } : {}) }),
  };
}

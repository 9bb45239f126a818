import * as os from 'node:os';

/**
 * A shell-style exit status: the code, or 128 + the signal number for a
 * process killed by a signal. Signals come as names (child_process) or
 * numbers.
 */
export function exitStatus(
  code: number | null | undefined,
  signal: NodeJS.Signals | number | null | undefined,
): number {
  if (signal) {
    const n =
      typeof signal === 'number'
        ? signal
        : ((os.constants.signals as Record<string, number>)[signal] ?? 0);
    return 128 + n;
  }
  return code ?? 0;
}

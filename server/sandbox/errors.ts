import type { NativeErrorProps, StepName } from '../../native/index';
import { hintFor } from './hints';

/**
 * A failure while building, joining or tearing down a sandbox. Carries Node's
 * errno shape plus the named step, so logs, the CLI and the lab UI can all say
 * which of the steps students are learning went wrong.
 */
export class SandboxError extends Error {
  readonly code: string | undefined;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;
  /** The named step that failed ('' when none applies). */
  readonly step: StepName | '';
  readonly detail: string;
  /** A learner/operator-facing suggestion, when we know one. */
  readonly hint: string | undefined;

  constructor(
    message: string,
    props: Partial<Omit<NativeErrorProps, 'step'>> & {
      step?: StepName | '';
      hint?: string;
      cause?: unknown;
    } = {},
  ) {
    super(message, props.cause === undefined ? undefined : { cause: props.cause });
    this.name = 'SandboxError';
    this.code = props.code;
    this.errno = props.errno ?? 0;
    this.syscall = props.syscall ?? '';
    this.path = props.path ?? '';
    this.step = props.step ?? '';
    this.detail = props.detail ?? '';
    this.hint = props.hint ?? hintFor(this.syscall, this.code, this.detail);
  }

  /**
   * The one place a native failure becomes a message: the addon and the
   * helper's ERR records hand over only properties.
   */
  static fromNative(props: NativeErrorProps, context?: string): SandboxError {
    const what = [props.syscall, props.path].filter(Boolean).join(' ') || 'operation';
    const message =
      `${context ? `${context}: ` : ''}${props.step ? `${props.step}: ` : ''}${what} failed` +
      `${props.code ? ` (${props.code})` : ''}${props.detail ? ` [${props.detail}]` : ''}`;
    return new SandboxError(message, props);
  }

  /** Wraps a lower-level error with context, keeping its errno shape. */
  static wrap(context: string, err: unknown, step?: StepName): SandboxError {
    if (err instanceof SandboxError) {
      return new SandboxError(`${context}: ${err.message}`, {
        code: err.code,
        errno: err.errno,
        syscall: err.syscall,
        path: err.path,
        step: step ?? err.step,
        detail: err.detail,
        hint: err.hint,
        cause: err,
      });
    }
    const e = err as NodeJS.ErrnoException;
    return new SandboxError(`${context}: ${e?.message ?? String(err)}`, {
      code: e?.code,
      errno: typeof e?.errno === 'number' ? Math.abs(e.errno) : 0,
      syscall: e?.syscall ?? '',
      path: e?.path ?? '',
      step: step ?? '',
      cause: err,
    });
  }

  toJSON(): Record<string, unknown> {
    return {
      message: this.message,
      code: this.code,
      errno: this.errno,
      syscall: this.syscall,
      path: this.path,
      step: this.step,
      hint: this.hint,
    };
  }
}

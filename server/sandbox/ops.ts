/** Shorthands for building the helper's op list (steps.ts, cgroups.ts). */
import type { MountFlag, Op, StepName } from '../../native/index';

/** A mount(2) op; '' for source, fstype or data means NULL. */
export function mount(
  step: StepName,
  source: string,
  target: string,
  fstype: string,
  flags: readonly MountFlag[],
  data: string,
): Op {
  return { step, op: 'mount', source, target, fstype, flags: [...flags], data };
}

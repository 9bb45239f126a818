/** Shorthands for building the helper's op list (steps.ts, cgroups.ts). */
import type { MountFlag, Op, StepName } from '../../native/index';

/** The flags of every pseudo-filesystem mount that needs neither setuid, devices nor exec. */
export const NOSUID_NODEV_NOEXEC: readonly MountFlag[] = ['MS_NOSUID', 'MS_NODEV', 'MS_NOEXEC'];

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

/**
 * `underlay doctor`'s reading of the kernel's preemption model: on a
 * PREEMPT_NONE kernel one student's disk fill or terminal flood delays every
 * keystroke (docs/benchmarks.md), so doctor warns.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { preemptionModel } from '../../server/cli/doctor';

// The relevant lines of two real configs: this CI host's and Debian 12's.
const NONE_DYNAMIC =
  'CONFIG_PREEMPT_NONE=y\n# CONFIG_PREEMPT is not set\nCONFIG_PREEMPT_DYNAMIC=y\n';
const DEBIAN =
  '# CONFIG_PREEMPT_NONE is not set\nCONFIG_PREEMPT_VOLUNTARY=y\nCONFIG_PREEMPT_DYNAMIC=y\n';

test('the built-in model, when the command line chooses none', () => {
  assert.equal(preemptionModel(NONE_DYNAMIC, 'console=ttyS0 root=/dev/vda'), 'none');
  assert.equal(preemptionModel(DEBIAN, 'BOOT_IMAGE=/vmlinuz quiet'), 'voluntary');
});

test('preempt= on the command line wins on a PREEMPT_DYNAMIC kernel only', () => {
  assert.equal(preemptionModel(NONE_DYNAMIC, 'quiet preempt=full'), 'full');
  assert.equal(preemptionModel(DEBIAN, 'preempt=none'), 'none');
  assert.equal(preemptionModel('CONFIG_PREEMPT_NONE=y\n', 'preempt=full'), 'none');
  // Not a whole word: ignored.
  assert.equal(preemptionModel(NONE_DYNAMIC, 'xpreempt=full'), 'none');
});

test('no readable config: unknown, not a guess', () => {
  assert.equal(preemptionModel('', 'preempt=full'), undefined);
});

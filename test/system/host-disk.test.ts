/**
 * Session disks are thin (sparse ext4 images that take host blocks as
 * students write), so the host's disk is shared by every student at once.
 * The attack: many students fill their disks together. If the server admits
 * more disk than the host has, the host filesystem fills first and every
 * disk on it fails at once: writes end in EIO instead of ENOSPC, ext4 aborts
 * its journal and goes read-only, the store cannot commit. So admission
 * counts what every live disk may still grow by (docs/sandbox.md#the-host-disk).
 *
 * The host here is a small ext4 filesystem of its own, mounted as the state
 * dir, so that filling it costs seconds and touches nothing else.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe } from 'node:test';
import { loadConfig } from '../../server/config';
import { SandboxManager, type Sandbox } from '../../server/sandbox/index';
import { createLogger } from '../../server/util/logger';
import { TEST_STATE_DIR, testEnv, testManager } from '../helpers/env';
import { SYSTEM_NEEDS, sysTest } from '../helpers/requires';

const MiB = 1024 * 1024;
const HOST_BYTES = 256 * MiB;
const DISK_BYTES = 32 * MiB;
const RESERVE = '16M';
const log = createLogger('warn');

describe('the host disk, shared by every session disk', () => {
  const backing = path.join(TEST_STATE_DIR, `host-disk-${process.pid}.img`);
  const stateDir = path.join(TEST_STATE_DIR, `host-disk-${process.pid}`);
  let mounted = false;
  let m: SandboxManager | undefined;
  const made: Sandbox[] = [];

  before(() => {
    if (process.getuid?.() !== 0) return;
    fs.mkdirSync(stateDir, { recursive: true });
    fs.closeSync(fs.openSync(backing, 'w'));
    fs.truncateSync(backing, HOST_BYTES);
    execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', backing]);
    execFileSync('mount', ['-o', 'loop', backing, stateDir]);
    mounted = true;
    fs.chmodSync(stateDir, 0o711);
  });

  after(async () => {
    for (const sb of made) await m?.destroy(sb.id).catch(() => {});
    if (mounted) execFileSync('umount', [stateDir]);
    fs.rmSync(backing, { force: true });
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  sysTest(
    'students filling their disks together get ENOSPC each; the host filesystem never fills',
    SYSTEM_NEEDS,
    async () => {
      m = new SandboxManager({
        config: loadConfig(
          testEnv({ UNDERLAY_STATE_DIR: stateDir, UNDERLAY_DISK_RESERVE: RESERVE }),
        ),
        // The shared test store: its id ranges are the ones the suite owns.
        store: testManager().store,
        logger: log,
      });
      // Twice what the host can hold, asked for all at once (admission is
      // decided before any disk exists, so it must count the ones on the way).
      const asked = (2 * HOST_BYTES) / DISK_BYTES;
      const results = await Promise.allSettled(
        Array.from({ length: asked }, () =>
          m!.create({ limits: { scratchBytes: DISK_BYTES, memoryBytes: 128 * MiB } }),
        ),
      );
      for (const r of results) if (r.status === 'fulfilled') made.push(r.value);
      const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      for (const err of refused) {
        assert.equal((err as { kind?: string }).kind, 'unavailable', String(err));
        assert.match(String((err as Error).message), /no disk space for another sandbox/);
      }
      assert.ok(
        made.length >= 2,
        `only ${made.length} sandboxes started on a ${HOST_BYTES / MiB} MiB host`,
      );
      assert.ok(
        made.length * DISK_BYTES <= HOST_BYTES,
        `${made.length} disks of ${DISK_BYTES / MiB} MiB were admitted on a ${HOST_BYTES / MiB} MiB host`,
      );

      // Every student fills their disk at once, and forces it out to the host.
      const fills = await Promise.all(
        made.map((sb) =>
          sb.exec(
            ['bash', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M conv=fsync 2>&1; echo "rc=$?"'],
            {
              timeoutMs: 300_000,
            },
          ),
        ),
      );
      for (const [i, r] of fills.entries()) {
        assert.match(r.stdout, /No space left on device/, `sandbox ${i}: ${r.stdout}`);
        assert.doesNotMatch(r.stdout, /Input\/output error|Read-only/, `sandbox ${i}: ${r.stdout}`);
      }
      const st = fs.statfsSync(stateDir);
      assert.ok(st.bavail > 0, 'the host filesystem filled up');
      // Each disk is still a healthy filesystem: delete, write again.
      for (const [i, sb] of made.entries()) {
        const r = await sb.exec([
          'bash',
          '-c',
          'rm /tmp/fill && echo fine > /root/after && cat /root/after',
        ]);
        assert.equal(r.stdout.trim(), 'fine', `sandbox ${i}: ${r.stdout}${r.stderr}`);
      }
      for (const sb of made.splice(0)) await m.destroy(sb.id);
    },
  );

  sysTest(
    'short of room, a parked disk is dropped for a live session, and only then',
    SYSTEM_NEEDS,
    async () => {
      m ??= new SandboxManager({
        config: loadConfig(
          testEnv({ UNDERLAY_STATE_DIR: stateDir, UNDERLAY_DISK_RESERVE: RESERVE }),
        ),
        store: testManager().store,
        logger: log,
      });
      const limits = { scratchBytes: DISK_BYTES, memoryBytes: 128 * MiB };
      // A student worked (50 MiB of files, more than any new disk may
      // need) and left: their disk is parked.
      const keep = { owner: `host-disk-${process.pid}`, name: 'lab' };
      const first = await m.create({
        limits: { ...limits, scratchBytes: 2 * DISK_BYTES },
        keepDisk: keep,
      });
      const w = await first.exec([
        'bash',
        '-c',
        'head -c 50M /dev/zero > /root/work && sync && echo ok',
      ]);
      assert.equal(w.stdout.trim(), 'ok', w.stderr);
      await m.destroy(first.id);
      const parked = () => m!.disks().some((d) => d.owner === keep.owner && !d.sandbox);
      assert.ok(parked(), 'the disk is parked');
      // New students arrive one by one until the host is full.
      let refused: (Error & { kind?: string }) | undefined;
      const kept: boolean[] = [];
      while (!refused && made.length < 32) {
        try {
          made.push(await m.create({ limits }));
          kept.push(parked());
        } catch (err) {
          refused = err as Error & { kind?: string };
        }
      }
      assert.equal(refused?.kind, 'unavailable', String(refused));
      assert.ok(!parked(), 'the parked disk was dropped before a live student was refused');
      // It went only when it had to: the sandboxes started before that kept it.
      const firstGone = kept.indexOf(false);
      assert.ok(
        firstGone >= 1 && kept.slice(firstGone).every((k) => !k),
        `parked disk still there after each create: ${kept.join(',')}`,
      );
      for (const sb of made.splice(0)) await m.destroy(sb.id);
    },
  );
});

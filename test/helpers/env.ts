/**
 * System tests use their own state dir and a uid base far from the
 * server's, so they can run beside a live `underlay serve` without sharing
 * an id range (each range must belong to one live session only). They reuse
 * the base image built by setup.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadConfig, type Config } from '../../server/config';
import { SandboxManager } from '../../server/sandbox/index';
import { Store } from '../../server/store/store';
import { createLogger } from '../../server/util/logger';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const CLI = path.join(REPO, 'bin', 'underlay');
/** Where tests write reports and screenshots: test/artifacts/, or elsewhere on a read-only checkout. */
export const ARTIFACTS =
  process.env.UNDERLAY_TEST_ARTIFACTS ?? path.join(REPO, 'test', 'artifacts');
export const TEST_STATE_DIR = process.env.UNDERLAY_TEST_STATE_DIR ?? '/var/lib/underlay-test';
export const TEST_UID_BASE = Number(process.env.UNDERLAY_TEST_UID_BASE ?? 100000 + 65536 * 2000);

const tempDirs: string[] = [];
/**
 * A new directory under the OS temp dir, removed when the test process
 * exits (a test that fails half way leaves no litter either).
 */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (!tempDirs.length)
    process.once('exit', () => {
      for (const d of tempDirs)
        try {
          fs.rmSync(d, { recursive: true, force: true });
        } catch {
          // Left for the OS's temp cleaner: an exit hook must not throw.
        }
    });
  tempDirs.push(dir);
  return dir;
}

export function testEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    UNDERLAY_STATE_DIR: TEST_STATE_DIR,
    UNDERLAY_IMAGES_DIR: process.env.UNDERLAY_IMAGES_DIR ?? '/var/lib/underlay/images',
    UNDERLAY_UID_BASE: String(TEST_UID_BASE),
    ...extra,
  };
}

export function testConfig(): Config {
  return loadConfig(testEnv());
}

let shared: SandboxManager | undefined;
export function testManager(): SandboxManager {
  if (!shared) {
    const config = testConfig();
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o711 });
    shared = new SandboxManager({
      config,
      store: new Store(config.stateDir),
      logger: createLogger('warn'),
    });
  }
  return shared;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(
  args: string[],
  opts: { env?: Record<string, string>; input?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [CLI, ...args],
      {
        env: testEnv(opts.env),
        timeout: opts.timeoutMs ?? 60_000,
        maxBuffer: 16 * 1024 * 1024,
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
    child.stdin?.end(opts.input ?? '');
  });
}

/** Every host pid whose real uid lies in [base, base + 65536). */
export function pidsOwnedByRange(base: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/status`, 'utf8');
      const uid = Number(/^Uid:\s+(\d+)/m.exec(st)?.[1]);
      if (uid >= base && uid < base + 65536) out.push(Number(d));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** Mount points in our mount namespace that contain `needle`. */
export function mountsContaining(needle: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(needle));
}

/**
 * What is left of a session disk (server/sandbox/disk.ts): its image file,
 * and any loop device still backed by it (one that outlived its mount).
 */
export function diskLeftovers(disk: string | undefined): string[] {
  if (!disk) return [];
  const out = fs.existsSync(disk) ? [disk] : [];
  for (const dev of fs.existsSync('/sys/block') ? fs.readdirSync('/sys/block') : []) {
    if (!dev.startsWith('loop')) continue;
    try {
      const backing = fs.readFileSync(`/sys/block/${dev}/loop/backing_file`, 'utf8').trim();
      if (backing.startsWith(disk)) out.push(`/dev/${dev} -> ${backing}`);
    } catch {
      // not configured
    }
  }
  return out;
}

/**
 * The I/O limits set for block device `dev` (docs/sandbox.md#disk-bandwidth),
 * as rule lines: v1's blkio throttle rules in the hierarchy's root (where
 * the flusher's writes are) and in `cgroupDirs`' blkio dir; v2's io.max
 * line in the session cgroup (`cgroupDirs[0]`), unless all "max".
 */
export function diskIoRules(dev: string, cgroupDirs: string[] = []): string[] {
  const out: string[] = [];
  const blkio = '/sys/fs/cgroup/blkio';
  const v1 = fs.existsSync(blkio);
  const dirs = v1
    ? [blkio, ...cgroupDirs.filter((d) => d.startsWith(`${blkio}/`))]
    : cgroupDirs.slice(0, 1);
  for (const dir of dirs) {
    const files = v1
      ? ['read_bps', 'write_bps', 'read_iops', 'write_iops'].map(
          (f) => `blkio.throttle.${f}_device`,
        )
      : ['io.max'];
    for (const f of files) {
      let text = '';
      try {
        text = fs.readFileSync(path.join(dir, f), 'utf8');
      } catch {
        continue; // a removed cgroup
      }
      for (const l of text.split('\n'))
        if (l.startsWith(`${dev} `) && !/^\S+ rbps=max wbps=max riops=max wiops=max/.test(l))
          out.push(`${path.join(dir, f)}: ${l}`);
    }
  }
  return out;
}

/** The device's writeback bounds (/sys/class/bdi): the kernel's defaults when nobody set them. */
export function dirtyBound(dev: string): { strict: string; maxRatio: string } {
  const read = (f: string, dflt: string) => {
    try {
      return fs.readFileSync(`/sys/class/bdi/${dev}/${f}`, 'utf8').trim();
    } catch {
      return dflt; // no such knob on this kernel
    }
  };
  return { strict: read('strict_limit', '0'), maxRatio: read('max_ratio', '100') };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

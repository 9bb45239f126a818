/**
 * System tests use their own state dir and a uid base far from the
 * server's, so they can run beside a live `underlay serve` without sharing
 * an id range (each range must belong to one live session only). They reuse
 * the base image built by setup.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
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

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

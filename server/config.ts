import * as os from 'node:os';
import * as path from 'node:path';

/** Defaults in one place. Everything here can be overridden per call or by env. */
export interface Config {
  /** Sandboxes and the SQLite store. UNDERLAY_STATE_DIR, default /var/lib/underlay. */
  stateDir: string;
  /** Base images. UNDERLAY_IMAGES_DIR, default <stateDir>/images. */
  imagesDir: string;
  /**
   * First host uid of the first session range; ranges are 65536 wide.
   * UNDERLAY_UID_BASE. Two state dirs on one host must use disjoint bases.
   */
  uidBase: number;
  /** How many concurrent session ranges exist (100000 + 65536*k, k < maxSessions). */
  maxSessions: number;
  /**
   * Share the base image through idmapped mounts (kernel >= 5.19). When
   * false - UNDERLAY_IDMAP=0, or an older kernel - each uid range gets a
   * shifted copy instead (docs/sandbox.md).
   */
  idmap: boolean;
}

function kernelHasIdmap(release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return !!m && (Number(m[1]) > 5 || (Number(m[1]) === 5 && Number(m[2]) >= 19));
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const stateDir = path.resolve(env.UNDERLAY_STATE_DIR ?? '/var/lib/underlay');
  const imagesDir = path.resolve(env.UNDERLAY_IMAGES_DIR ?? path.join(stateDir, 'images'));
  const uidBase = Number(env.UNDERLAY_UID_BASE ?? 100000);
  if (!Number.isInteger(uidBase) || uidBase < 65536 || uidBase % 65536 !== 100000 % 65536) {
    throw new Error(`UNDERLAY_UID_BASE must be 100000 + 65536*n (got ${env.UNDERLAY_UID_BASE})`);
  }
  const idmap = env.UNDERLAY_IDMAP === '0' ? false : kernelHasIdmap();
  return { stateDir, imagesDir, uidBase, maxSessions: 1000, idmap };
}

/** Default per-sandbox limits (SANDBOX.md §0 / §3.5). */
export const DEFAULT_LIMITS = {
  memoryBytes: 512 * 1024 * 1024,
  pids: 512,
  cpus: 1,
  scratchBytes: 256 * 1024 * 1024,
  scratchInodes: 65536,
  tmpBytes: 128 * 1024 * 1024,
};

/** Parses "512M", "1G", "64k", "1048576". Returns undefined on junk. */
export function parseSize(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$/.exec(s);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = (m[2] ?? '').toLowerCase();
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[unit] ?? 1;
  return Math.floor(n * mult);
}

/**
 * The base image: a debootstrap of the host's own distribution and suite,
 * minbase plus what the labs need, owned 0..65535 on disk and shown to each
 * session through an idmapped mount. Content-addressed: the id is a hash of
 * the recipe, so the same recipe is built once and reused.
 *
 * The Debian mirror is read from the host's apt sources at run time; no
 * mirror address is written anywhere in the repository.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RequestError } from '../util/errors';
import { SandboxError } from './errors';

/** Packages on top of minbase (issue #2 / docs/sandbox.md#what-the-labs-need). */
export const IMAGE_PACKAGES = [
  'util-linux',
  'iproute2',
  'iputils-ping',
  'libcap2-bin',
  'attr',
  'procps',
  'psmisc',
  'python3',
  'strace',
  'tini',
  'busybox-static',
  'tar',
  'less',
  'nano',
  'file',
  'ncurses-base',
];

/** Bump when the post-processing below changes what an image contains. */
const RECIPE_VERSION = 1;

export interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/** Parses deb822 (.sources) and one-line (.list) apt sources; returns `deb` entries only. */
export function parseAptSources(files: { name: string; text: string }[]): AptSource[] {
  const out: AptSource[] = [];
  for (const f of files) {
    if (f.name.endsWith('.sources')) {
      for (const stanza of f.text.split(/\n\s*\n/)) {
        const fields = new Map<string, string>();
        for (const line of stanza.split('\n')) {
          const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
          if (m && m[1] && !line.startsWith('#')) fields.set(m[1].toLowerCase(), m[2] ?? '');
        }
        if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
        if ((fields.get('enabled') ?? 'yes') === 'no') continue;
        for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
          out.push({
            uri,
            suites: (fields.get('suites') ?? '').split(/\s+/).filter(Boolean),
            components: (fields.get('components') ?? '').split(/\s+/).filter(Boolean),
          });
        }
      }
    } else {
      for (const raw of f.text.split('\n')) {
        const line = raw.replace(/#.*/, '').trim();
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
        if (m && m[1] && m[2]) {
          out.push({
            uri: m[1],
            suites: [m[2]],
            components: (m[3] ?? '').split(/\s+/).filter(Boolean),
          });
        }
      }
    }
  }
  return out;
}

export interface HostDistro {
  id: string;
  codename: string;
  arch: string;
}

export function hostDistro(): HostDistro {
  const osr = fs.readFileSync('/etc/os-release', 'utf8');
  const get = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?`, 'm').exec(osr)?.[1] ?? '';
  const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch as string] ?? process.arch;
  return { id: get('ID'), codename: get('VERSION_CODENAME'), arch };
}

/** The host's mirror for its own suite's `main`, from /etc/apt. */
export function hostMirror(codename: string, aptDir = '/etc/apt'): string {
  const files: { name: string; text: string }[] = [];
  const main = path.join(aptDir, 'sources.list');
  if (fs.existsSync(main)) files.push({ name: main, text: fs.readFileSync(main, 'utf8') });
  const dir = path.join(aptDir, 'sources.list.d');
  if (fs.existsSync(dir)) {
    for (const n of fs.readdirSync(dir).sort()) {
      if (n.endsWith('.list') || n.endsWith('.sources')) {
        files.push({ name: n, text: fs.readFileSync(path.join(dir, n), 'utf8') });
      }
    }
  }
  const hit = parseAptSources(files).find(
    (s) => s.suites.includes(codename) && s.components.includes('main'),
  );
  if (!hit) {
    throw new SandboxError(
      `no apt source for suite '${codename}' with component 'main' in ${aptDir}`,
      {
        step: 'image',
        hint: "the base image is built from the host distribution's own apt sources; add one for the host suite",
      },
    );
  }
  return hit.uri;
}

export interface ImageInfo {
  id: string;
  rootfs: string;
  suite: string;
  arch: string;
  packages: string[];
  builtAt: string;
  buildSeconds: number;
}

/** The package list of an image: the base set plus a lab's extras, sorted and deduplicated. */
export function imagePackages(extra: readonly string[] = []): string[] {
  const more = [...new Set(extra)].filter((p) => !IMAGE_PACKAGES.includes(p)).sort();
  return [...IMAGE_PACKAGES, ...more];
}

export function imageId(distro: HostDistro, packages = IMAGE_PACKAGES): string {
  const recipe = JSON.stringify({
    v: RECIPE_VERSION,
    suite: distro.codename,
    arch: distro.arch,
    packages,
  });
  return crypto.createHash('sha256').update(recipe).digest('hex').slice(0, 16);
}

/** The image for the current recipe (plus `extra` packages), if built. */
export function findImage(
  imagesDir: string,
  distro = hostDistro(),
  extra: readonly string[] = [],
): ImageInfo | undefined {
  const meta = path.join(imagesDir, imageId(distro, imagePackages(extra)), 'image.json');
  if (!fs.existsSync(meta)) return undefined;
  return JSON.parse(fs.readFileSync(meta, 'utf8')) as ImageInfo;
}

export function requireImage(imagesDir: string, extra: readonly string[] = []): ImageInfo {
  const img = findImage(imagesDir, hostDistro(), extra);
  if (!img) {
    const more = imagePackages(extra).slice(IMAGE_PACKAGES.length);
    throw new RequestError(
      'unavailable',
      more.length
        ? `no image with the lab's extra packages (${more.join(', ')}) yet`
        : 'no base image yet',
      {
        hint: more.length
          ? 'run `underlay rootfs build --labs` (a minute per package set; needs the Debian package mirror)'
          : 'run `underlay rootfs build` (about a minute; needs the Debian package mirror)',
      },
    );
  }
  return img;
}

function run(cmd: string, args: string[], onLine: (l: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const feed = (b: Buffer) => {
      const text = b.toString();
      tail = (tail + text).slice(-4000);
      for (const l of text.split('\n')) if (l.trim()) onLine(l);
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.on('error', (err) => reject(SandboxError.wrap(`run ${cmd}`, err, 'image')));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new SandboxError(`${cmd} exited with ${code}:\n${tail}`, {
            step: 'image',
            hint:
              cmd === 'debootstrap' ? 'install it with `apt-get install debootstrap`' : undefined,
          }),
        );
    });
  });
}

function appendLine(file: string, line: string, key: string): void {
  const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  if (text.split('\n').some((l) => l.startsWith(key))) return;
  fs.writeFileSync(file, (text.endsWith('\n') || text === '' ? text : text + '\n') + line + '\n');
}

/** What the labs expect on top of debootstrap: a `learner`, /lab, a quiet hostname. */
function postProcess(root: string): void {
  const etc = path.join(root, 'etc');
  appendLine(
    path.join(etc, 'passwd'),
    'learner:x:1000:1000:Learner:/home/learner:/bin/bash',
    'learner:',
  );
  appendLine(path.join(etc, 'group'), 'learner:x:1000:', 'learner:');
  appendLine(path.join(etc, 'shadow'), 'learner:*:19000:0:99999:7:::', 'learner:');
  const home = path.join(root, 'home', 'learner');
  fs.mkdirSync(home, { recursive: true, mode: 0o755 });
  const skel = path.join(etc, 'skel');
  if (fs.existsSync(skel)) {
    for (const f of fs.readdirSync(skel)) fs.copyFileSync(path.join(skel, f), path.join(home, f));
  }
  for (const f of ['', ...fs.readdirSync(home)]) fs.lchownSync(path.join(home, f), 1000, 1000);
  fs.mkdirSync(path.join(root, 'lab'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(etc, 'hostname'), 'underlay\n');
  fs.writeFileSync(path.join(etc, 'hosts'), '127.0.0.1\tlocalhost\n::1\tlocalhost\n');
  fs.writeFileSync(path.join(etc, 'resolv.conf'), '');
  // A prompt that says where you are; colour only when the terminal can.
  fs.appendFileSync(
    path.join(root, 'root', '.bashrc'),
    "\nPS1='\\[\\e[1;32m\\]\\u@\\h\\[\\e[0m\\]:\\[\\e[1;34m\\]\\w\\[\\e[0m\\]\\$ '\n",
  );
  for (const d of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
    const dir = path.join(root, d);
    if (!fs.existsSync(dir)) continue;
    for (const f of fs.readdirSync(dir)) {
      if (f.endsWith('.deb') || (d.endsWith('lists') && f !== 'partial' && f !== 'lock')) {
        fs.rmSync(path.join(dir, f), { force: true });
      }
    }
  }
}

export interface BuildOptions {
  force?: boolean;
  onLine?: (line: string) => void;
  /** Packages on top of the base set (a lab's `sandbox.packages`): a separate image. */
  extra?: readonly string[];
}

export async function buildImage(dir: string, opts: BuildOptions = {}): Promise<ImageInfo> {
  const distro = hostDistro();
  const existing = findImage(dir, distro, opts.extra);
  if (existing && !opts.force) return existing;
  const packages = imagePackages(opts.extra);
  const id = imageId(distro, packages);
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const tmp = path.join(dir, `${id}.tmp-${process.pid}`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { mode: 0o711 });
  const rootfs = path.join(tmp, 'rootfs');
  const cache = path.join(dir, '.cache', 'debootstrap');
  fs.mkdirSync(cache, { recursive: true });
  const mirror = hostMirror(distro.codename);
  const t0 = Date.now();
  const onLine = opts.onLine ?? (() => {});
  try {
    await run(
      'debootstrap',
      [
        '--variant=minbase',
        `--arch=${distro.arch}`,
        `--cache-dir=${cache}`,
        `--include=${packages.join(',')}`,
        distro.codename,
        rootfs,
        mirror,
      ],
      onLine,
    );
    postProcess(rootfs);
    fs.chmodSync(rootfs, 0o755);
    const info: ImageInfo = {
      id,
      rootfs: path.join(dir, id, 'rootfs'),
      suite: distro.codename,
      arch: distro.arch,
      packages,
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - t0) / 100) / 10,
    };
    fs.writeFileSync(path.join(tmp, 'image.json'), JSON.stringify(info, null, 2));
    const final = path.join(dir, id);
    if (fs.existsSync(final)) fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    // Now rather than on the first sandbox's create, which runs on the
    // server's event loop (two copies of ~50 MB).
    toolsTree(info, dir);
    return info;
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Fallback for kernels without idmapped mounts (< 5.19): a copy of the base
 * image shifted into the session's uid range, cached per range and reused by
 * every later session on that range. Slow the first time (a full copy) and
 * heavy on disk, which is why idmapped mounts are the default.
 *
 * chown(2) clears setuid/setgid bits and file capabilities, so both are put
 * back afterwards; capabilities are rewritten as namespaced (v3) ones whose
 * rootid is the range's root, or the kernel would ignore them inside.
 */
export function shiftedImage(image: ImageInfo, imagesDir: string, uidBase: number): string {
  const dir = path.join(imagesDir, image.id, `shifted-${uidBase}`);
  const rootfs = path.join(dir, 'rootfs');
  if (fs.existsSync(path.join(dir, 'complete'))) return rootfs;
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true, mode: 0o711 });
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new SandboxError(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`, {
        step: 'idmap-lower',
      });
    }
    return r.stdout;
  };
  sh('cp', ['-a', image.rootfs, rootfs]);
  const caps = sh('getcap', ['-r', rootfs])
    .split('\n')
    .map((l) => /^(\S+)\s+(\S+)$/.exec(l.trim()))
    .filter((m): m is RegExpExecArray => m !== null);
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    fs.lchownSync(p, st.uid + uidBase, st.gid + uidBase);
    if (!st.isSymbolicLink() && st.mode & 0o6000) fs.chmodSync(p, st.mode & 0o7777);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(rootfs);
  for (const [, file, cap] of caps)
    sh('setcap', ['-n', String(uidBase), cap as string, file as string]);
  fs.writeFileSync(path.join(dir, 'complete'), new Date().toISOString());
  return rootfs;
}

/**
 * The trusted toolset checks and hints run with (docs/sandbox.md#trusted-checks):
 * a copy of the image's /usr/bin and /usr/sbin in which every ELF program is
 * execute-only for others (0711, no setuid). Inside a sandbox these files
 * are owned by an unmapped uid (host root), so sandbox root reads them only
 * as "other": exec'ing an unreadable program makes the kernel tie the
 * process's memory to the host's user namespace (would_dump), and sandbox
 * root can then neither ptrace it nor read its /proc/<pid>/mem. Built once
 * per image, atomically, on first use.
 */
export function toolsTree(
  image: ImageInfo,
  imagesDir: string,
): { bin: string; sbin: string; libs: { hostDir: string; target: string }[] } {
  // `tools-2`: the first version, `tools`, had no libraries (manager.ts
  // removes it once no sandbox's check view names it).
  const dir = path.join(imagesDir, image.id, 'tools-2');
  const multiarch = fs
    .readdirSync(path.join(image.rootfs, 'usr', 'lib'))
    .filter((d) => /^[a-z0-9_]+-linux-gnu[a-z]*$/.test(d));
  const out = {
    bin: path.join(dir, 'bin'),
    sbin: path.join(dir, 'sbin'),
    libs: multiarch.map((d) => ({ hostDir: path.join(dir, 'lib', d), target: `usr/lib/${d}` })),
  };
  if (fs.existsSync(path.join(dir, 'complete'))) return out;
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    fs.mkdirSync(path.join(tmp, 'lib'), { recursive: true, mode: 0o755 });
    // The shared libraries, copied: a file mapped by many processes has one
    // kernel lock for all its mappings (i_mmap_rwsem), which every fork,
    // exec and exit of a process mapping it takes. A student's fork bomb
    // maps the image's libc thousands of times a second; on the same inode a
    // check waited behind it for seconds (bench:class). A copy is its own
    // inode: the student's processes never map it.
    for (const d of multiarch) {
      const r = spawnSync(
        'cp',
        ['-a', path.join(image.rootfs, 'usr', 'lib', d), path.join(tmp, 'lib', d)],
        { encoding: 'utf8' },
      );
      if (r.status !== 0)
        throw new SandboxError(`copying the image's /usr/lib/${d} failed: ${r.stderr || r.error}`, {
          step: 'cgroup',
        });
    }
    for (const d of ['bin', 'sbin']) {
      const r = spawnSync('cp', ['-a', path.join(image.rootfs, 'usr', d), path.join(tmp, d)], {
        encoding: 'utf8',
      });
      if (r.status !== 0)
        throw new SandboxError(`copying the image's /usr/${d} failed: ${r.stderr || r.error}`, {
          step: 'cgroup',
        });
      for (const e of fs.readdirSync(path.join(tmp, d))) {
        const p = path.join(tmp, d, e);
        // A link (awk -> /etc/alternatives/awk -> /usr/bin/mawk) would lead
        // back to a readable program: replace it with a copy of its target,
        // resolved inside the image.
        if (fs.lstatSync(p).isSymbolicLink()) {
          const target = resolveInImage(image.rootfs, path.join('/usr', d, e));
          fs.unlinkSync(p);
          if (!target || !fs.statSync(target).isFile()) continue;
          fs.copyFileSync(target, p);
          fs.chmodSync(p, fs.statSync(target).mode & 0o755);
        }
        if (!fs.lstatSync(p).isFile()) continue;
        const fd = fs.openSync(p, 'r');
        const magic = Buffer.alloc(4);
        fs.readSync(fd, magic, 0, 4, 0);
        fs.closeSync(fd);
        if (magic.toString('latin1') === '\x7fELF') fs.chmodSync(p, 0o711);
      }
    }
    fs.writeFileSync(path.join(tmp, 'complete'), new Date().toISOString());
    try {
      fs.renameSync(tmp, dir);
    } catch (err) {
      // Another process built it meanwhile: theirs is as good as ours.
      if (!fs.existsSync(path.join(dir, 'complete'))) throw err;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    return out;
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** The host path `p` (absolute, inside the image) leads to, following links as if chrooted; undefined if it leaves or loops. */
function resolveInImage(root: string, p: string): string | undefined {
  let cur = p;
  for (let hops = 0; hops < 40; hops++) {
    const host = path.join(root, cur);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(host);
    } catch {
      return undefined;
    }
    if (!st.isSymbolicLink()) return host;
    const link = fs.readlinkSync(host);
    cur = path.posix.resolve(path.posix.dirname(cur), link);
  }
  return undefined;
}

/**
 * The VM tier's guest: Debian 12 as the Vagrant box runs it (kernel 6.1,
 * systemd, cgroup v2 only), built from the host's own apt sources without
 * touching the host's /boot and without loop devices, and cached:
 *
 *   kernel-<release>/   the current linux-image-amd64, unpacked (dpkg -x),
 *                       depmod'ed, and a ~2 MB initramfs (busybox + the
 *                       modules to mount an ext4 virtio disk)
 *   os-<hash>/          a debootstrapped bookworm with systemd and what the
 *                       system tests call (gcc, python3, chattr, ...), set up
 *                       to boot under qemu and run test/vm/guest/run
 *   disk-<hash>.ext4    that tree + the kernel's modules + this host's node +
 *                       Underlay's base images, made with `mkfs.ext4 -d`
 *
 * qemu opens the disk with snapshot=on, so every run starts from the same
 * state. test/README.md ("The VM tier") says how it fits together.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostMirror } from '../../server/sandbox/images';

/** Bump when the recipe below changes in a way the inputs' hashes do not show. */
const RECIPE = 3;

/** What the guest OS needs besides systemd: the system tests call these. */
export const GUEST_PACKAGES = [
  'systemd',
  'systemd-sysv',
  'dbus',
  'udev',
  'kmod',
  'procps',
  'iproute2',
  'util-linux',
  'e2fsprogs',
  'libcap2-bin',
  'python3',
  'gcc',
  'libc6-dev',
  'libstdc++6',
];

/**
 * The guest's root disk (sparse, and the guest writes to a snapshot): large
 * enough that admission (docs/sandbox.md#the-host-disk) lets the system
 * tests start their 50 sandboxes at once with 512 MiB session disks.
 */
const DISK_SIZE = '48G';

/** Modules the initramfs loads to mount the root disk (soft dependencies included). */
const INITRAMFS_MODULES = ['crc32c_generic', 'ext4', 'virtio_pci', 'virtio_blk'];

export interface Guest {
  kernel: string;
  initrd: string;
  disk: string;
  release: string;
}

export interface BuildLog {
  (line: string): void;
}

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(' ')} exited with ${r.status}: ${String(r.stderr ?? '').slice(-2000)}`,
    );
  return String(r.stdout ?? '');
}

const sha = (...parts: string[]) =>
  crypto.createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 16);

/** A cache entry is built under a temporary name and renamed into place when whole. */
function cached(dest: string, build: (tmp: string) => void): string {
  if (fs.existsSync(dest)) return dest;
  const tmp = `${dest}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    build(tmp);
    fs.renameSync(tmp, dest);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return dest;
}

/** The package linux-image-amd64 points at today, e.g. linux-image-6.1.0-57-amd64. */
function currentKernelPackage(): string {
  const deps = () =>
    /Depends:\s*(linux-image-\S+)/.exec(run('apt-cache', ['depends', 'linux-image-amd64']))?.[1];
  let pkg = deps();
  if (!pkg) {
    run('apt-get', ['update', '-qq']);
    pkg = deps();
  }
  if (!pkg) throw new Error('apt-cache knows no linux-image-amd64 (check the apt sources)');
  return pkg;
}

function buildKernel(cache: string, log: BuildLog): { dir: string; release: string } {
  const pkg = currentKernelPackage();
  const release = pkg.replace(/^linux-image-/, '');
  const dir = cached(path.join(cache, `kernel-${release}-r${RECIPE}`), (tmp) => {
    log(`kernel: downloading ${pkg} from the host's apt sources`);
    fs.mkdirSync(tmp, { recursive: true });
    const download = () => run('apt-get', ['download', '-qq', pkg], { cwd: tmp });
    try {
      download();
    } catch {
      run('apt-get', ['update', '-qq']); // lists older than the archive
      download();
    }
    const deb = fs.readdirSync(tmp).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb`);
    const root = path.join(tmp, 'root');
    run('dpkg', ['-x', path.join(tmp, deb), root]);
    fs.rmSync(path.join(tmp, deb));
    // dpkg -x skips the package's scripts, so no depmod ran.
    run('busybox', ['depmod', '-b', root, release]);
    buildInitramfs(root, release, path.join(tmp, 'initrd.gz'));
  });
  return { dir, release };
}

/** modules.dep's closure of `names`, each as a path under lib/modules/<release>/. */
function moduleClosure(modDir: string, names: string[]): string[] {
  const deps = new Map<string, string[]>();
  for (const line of fs.readFileSync(path.join(modDir, 'modules.dep'), 'utf8').split('\n')) {
    const [mod, rest] = line.split(':');
    if (mod) deps.set(mod, (rest ?? '').trim().split(/\s+/).filter(Boolean));
  }
  const byName = new Map(
    [...deps.keys()].map((p) => [path.basename(p).replace(/\.ko(\.\w+)?$/, ''), p]),
  );
  const out = new Set<string>();
  const add = (p: string) => {
    if (out.has(p)) return;
    out.add(p);
    for (const d of deps.get(p) ?? []) add(d);
  };
  for (const n of names) {
    const p = byName.get(n) ?? byName.get(n.replace(/-/g, '_'));
    if (!p) throw new Error(`kernel module ${n} not in ${modDir}/modules.dep`);
    add(p);
  }
  return [...out];
}

/**
 * busybox, the root disk's modules and an /init that loads them, mounts
 * /dev/vda and hands over to systemd. The root must be a real filesystem:
 * pivot_root, which every sandbox uses, fails on an initramfs root.
 */
function buildInitramfs(kroot: string, release: string, out: string): void {
  const modDir = path.join(kroot, 'lib', 'modules', release);
  const stage = `${out}.d`;
  for (const d of ['bin', 'dev', 'proc', 'sys', 'newroot'])
    fs.mkdirSync(path.join(stage, d), { recursive: true });
  const busybox = run('sh', ['-c', 'command -v busybox']).trim();
  // The initramfs has no libc: Debian's `busybox` package is dynamic, `busybox-static` is not.
  if (/\bINTERP\b/.test(run('readelf', ['-l', busybox])))
    throw new Error(`${busybox} is dynamically linked: apt-get install busybox-static`);
  fs.copyFileSync(busybox, path.join(stage, 'bin', 'busybox'));
  fs.chmodSync(path.join(stage, 'bin', 'busybox'), 0o755);
  const target = path.join(stage, 'lib', 'modules', release);
  for (const m of moduleClosure(modDir, INITRAMFS_MODULES)) {
    fs.mkdirSync(path.join(target, path.dirname(m)), { recursive: true });
    fs.copyFileSync(path.join(modDir, m), path.join(target, m));
  }
  run('busybox', ['depmod', '-b', stage, release]);
  fs.writeFileSync(
    path.join(stage, 'init'),
    `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in ${INITRAMFS_MODULES.join(' ')}; do modprobe "$m" || echo "initramfs: modprobe $m failed"; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; echo o > /proc/sysrq-trigger; }
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
`,
    { mode: 0o755 },
  );
  run('sh', [
    '-c',
    `cd "${stage}" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "${out}"`,
  ]);
  fs.rmSync(stage, { recursive: true, force: true });
}

/** Files written into the guest OS tree (part of its cache key). */
function guestFiles(): Record<string, { text: string; mode?: number }> {
  const unit = (s: string) => ({ text: s.trimStart() });
  return {
    'etc/hostname': { text: 'underlay-vm\n' },
    'etc/hosts': { text: '127.0.0.1\tlocalhost underlay-vm\n::1\tlocalhost\n' },
    // The checkout, read-only as on a shared folder; results go out through a second share.
    'etc/fstab': {
      text:
        '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' +
        'project /opt/underlay 9p trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro 0 0\n' +
        'out /var/vm-out 9p trans=virtio,version=9p2000.L,msize=512000 0 0\n',
    },
    'etc/modules-load.d/underlay-vm.conf': { text: '9p\n9pnet_virtio\noverlay\n' },
    'etc/systemd/system/underlay-vm-test.service': unit(`
[Unit]
Description=Underlay VM test tier (test/vm/guest/run)
After=multi-user.target underlay.service
RequiresMountsFor=/opt/underlay /var/vm-out

[Service]
Type=oneshot
ExecStart=/bin/bash /opt/underlay/test/vm/guest/run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
# The tests create cgroups under their own, as under any service manager.
Delegate=yes
TimeoutStartSec=infinity
# Results are already on the host (9p) and the disk is a snapshot: no orderly
# shutdown (stopping a server still starting under emulation took minutes).
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate

[Install]
WantedBy=multi-user.target
`),
  };
}

function buildOs(cache: string, log: BuildLog): string {
  const files = guestFiles();
  const key = sha(String(RECIPE), GUEST_PACKAGES.join(','), JSON.stringify(files));
  return cached(path.join(cache, `os-${key}`), (tmp) => {
    const mirror = hostMirror('bookworm');
    log(`guest OS: debootstrap bookworm with systemd (${GUEST_PACKAGES.length} packages)`);
    run(
      'debootstrap',
      ['--variant=minbase', `--include=${GUEST_PACKAGES.join(',')}`, 'bookworm', tmp, mirror],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    for (const [rel, f] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
      fs.writeFileSync(path.join(tmp, rel), f.text, { mode: f.mode ?? 0o644 });
    }
    for (const d of ['opt/underlay', 'var/vm-out'])
      fs.mkdirSync(path.join(tmp, d), { recursive: true });
    const wants = path.join(tmp, 'etc/systemd/system/multi-user.target.wants');
    fs.mkdirSync(wants, { recursive: true });
    fs.symlinkSync(
      '/etc/systemd/system/underlay-vm-test.service',
      path.join(wants, 'underlay-vm-test.service'),
    );
    // The serial console carries the test output: no login prompt on it.
    for (const u of [
      'serial-getty@ttyS0.service',
      'getty@tty1.service',
      'apt-daily.timer',
      'apt-daily-upgrade.timer',
      'e2scrub_all.timer',
      'fstrim.timer',
    ])
      fs.symlinkSync('/dev/null', path.join(tmp, 'etc/systemd/system', u));
    // As the Vagrant provisioner does: the project's unit, enabled.
    fs.rmSync(path.join(tmp, 'var/cache/apt/archives'), { recursive: true, force: true });
    fs.mkdirSync(path.join(tmp, 'var/cache/apt/archives/partial'), { recursive: true });
    run('chroot', [tmp, 'passwd', '-d', 'root']);
  });
}

export interface GuestInputs {
  /** The project checkout (its scripts/underlay.service is installed). */
  repo: string;
  /** Underlay's base images on this host (copied to the same path in the guest). */
  imagesDir: string;
  cache: string;
  log: BuildLog;
}

/**
 * Removes the cache's older kernels and OS trees (~0.4-0.6 GB each) once the
 * current ones exist. Half-built entries (`.tmp-<pid>`) are left alone: they
 * may be another run's, and `cached` clears its own.
 */
function pruneCache(cache: string, keep: string[]): void {
  for (const f of fs.readdirSync(cache)) {
    if (!/^(kernel|os)-/.test(f) || f.includes('.tmp-') || keep.includes(f)) continue;
    fs.rmSync(path.join(cache, f), { recursive: true, force: true });
  }
}

export function ensureGuest(inp: GuestInputs): Guest {
  fs.mkdirSync(inp.cache, { recursive: true, mode: 0o700 });
  const kernel = buildKernel(inp.cache, inp.log);
  const os = buildOs(inp.cache, inp.log);
  pruneCache(inp.cache, [path.basename(kernel.dir), path.basename(os)]);
  const node = fs.realpathSync(process.execPath);
  const service = fs.readFileSync(path.join(inp.repo, 'scripts', 'underlay.service'), 'utf8');
  const images = fs
    .readdirSync(inp.imagesDir)
    .filter((d) => fs.existsSync(path.join(inp.imagesDir, d, 'image.json')))
    .sort();
  const key = sha(
    String(RECIPE),
    DISK_SIZE,
    path.basename(os),
    kernel.release,
    process.version,
    String(fs.statSync(node).size),
    service,
    inp.imagesDir,
    ...images,
  );
  const disk = path.join(inp.cache, `disk-${key}.ext4`);
  if (!fs.existsSync(disk)) {
    // One disk at a time in the cache: older ones are a few GB of sparse files.
    for (const f of fs.readdirSync(inp.cache))
      if (/^disk-.*\.ext4$/.test(f)) fs.rmSync(path.join(inp.cache, f), { force: true });
    inp.log(
      `disk: ${images.length} base image(s), node ${process.version}, kernel ${kernel.release}`,
    );
    const stage = path.join(inp.cache, `stage-${process.pid}`);
    fs.rmSync(stage, { recursive: true, force: true });
    try {
      // Hard links: the OS tree is only read here; what is added is new files.
      run('cp', ['-al', os, stage]);
      run('cp', ['-a', path.join(kernel.dir, 'root', 'lib', 'modules'), path.join(stage, 'lib')]);
      // The guest's own depmod (kmod): its modprobe wants the binary indexes busybox does not write.
      run('chroot', [stage, 'depmod', '-a', kernel.release]);
      fs.copyFileSync(node, path.join(stage, 'usr', 'bin', 'node'));
      fs.chmodSync(path.join(stage, 'usr', 'bin', 'node'), 0o755);
      const guestImages = path.join(stage, inp.imagesDir);
      fs.mkdirSync(guestImages, { recursive: true, mode: 0o711 });
      for (const id of images) run('cp', ['-a', path.join(inp.imagesDir, id), guestImages]);
      fs.writeFileSync(path.join(stage, 'etc/systemd/system/underlay.service'), service);
      fs.symlinkSync(
        '/etc/systemd/system/underlay.service',
        path.join(stage, 'etc/systemd/system/multi-user.target.wants/underlay.service'),
      );
      const tmpDisk = `${disk}.tmp`;
      run('mkfs.ext4', ['-q', '-F', '-L', 'underlay-vm', '-d', stage, tmpDisk, DISK_SIZE]);
      fs.renameSync(tmpDisk, disk);
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
  }
  return {
    kernel: path.join(kernel.dir, 'root', 'boot', `vmlinuz-${kernel.release}`),
    initrd: path.join(kernel.dir, 'initrd.gz'),
    disk,
    release: kernel.release,
  };
}

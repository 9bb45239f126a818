/**
 * `npm run test:vm`: the system and lab tests again, on the target the
 * README recommends - Debian 12 (kernel 6.1, cgroup v2 only, systemd) -
 * booted under qemu with software emulation (no KVM needed), with
 * `underlay serve` started by systemd from scripts/underlay.service as the
 * Vagrant provisioner installs it.
 *
 * The guest (guest-image.ts, cached under UNDERLAY_VM_CACHE, default
 * /var/cache/underlay/vm) mounts this checkout read-only, runs
 * test/vm/guest/run and powers off; its logs, TAP and JUnit land in
 * test/artifacts/vm/. Prints a line per stage with its time and ends with
 * "vm: N passed, N failed, N skipped". Where the tier cannot run (no qemu,
 * not root) it is skipped with the reason - and fails under CI=true.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findImage } from '../../server/sandbox/images';
import { ARTIFACTS, REPO, testConfig } from '../helpers/env';
import { mustRun } from '../helpers/requires';
import { ensureGuest } from './guest-image';

const OUT = path.join(ARTIFACTS, 'vm');
const CACHE = process.env.UNDERLAY_VM_CACHE ?? '/var/cache/underlay/vm';
/** The guest's whole run; the tier's budget is 12 minutes, this only stops a hung guest. */
const TIMEOUT_MIN = Number(process.env.UNDERLAY_VM_TIMEOUT_MIN ?? 50);
const STAGES = [
  'underlay doctor',
  'serve under systemd (HTTP + socket.io smoke test)',
  'system tests',
  'labs (underlay test labs/, --walkthrough)',
  'system tests, second group',
];

interface Stage {
  name: string;
  rc: number;
  seconds: number;
  passed: number;
  failed: number;
  skipped: number;
}

const t0 = Date.now();
const secs = (from: number) => Math.round((Date.now() - from) / 1000);

function finish(passed: number, failed: number, skipped: number): never {
  // For run-tests.js, which shows our output as it comes and adds these counts.
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'summary.json'), JSON.stringify({ passed, failed, skipped }));
  process.stdout.write(
    `vm: ${passed} passed, ${failed} failed, ${skipped} skipped (${secs(t0)} s in all)\n`,
  );
  process.exit(failed > 0 ? 1 : 0);
}

function cannotRun(why: string): never {
  if (mustRun()) {
    process.stdout.write(`vm tier cannot run where it must (CI): ${why}\n`);
    finish(0, 1, 0);
  }
  process.stdout.write(`vm tier skipped: ${why}\n`);
  finish(0, 0, 1);
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function preconditions(): void {
  if (process.getuid?.() !== 0) cannotRun('needs root (debootstrap, the guest disk)');
  if (os.arch() !== 'x64') cannotRun(`the guest is amd64; this host is ${os.arch()}`);
  for (const [cmd, pkg] of [
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['busybox', 'busybox-static'],
    ['debootstrap', 'debootstrap'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['apt-get', 'apt'],
  ] as const)
    if (!has(cmd)) cannotRun(`no ${cmd} (apt-get install ${pkg}; scripts/setup does)`);
  if (!findImage(testConfig().imagesDir)) cannotRun('no base image: run `underlay rootfs build`');
  for (const built of ['dist/test/vm/smoke.js', 'native/build/Release'])
    if (!fs.existsSync(path.join(REPO, built))) cannotRun(`${built} is missing: npm run build`);
}

function readStages(): Stage[] {
  const file = path.join(OUT, 'stages.tsv');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('vm-stage\t'))
    .map((l) => {
      const [, name, rc, seconds, passed, failed, skipped] = l.split('\t');
      return {
        name: name ?? '?',
        rc: Number(rc),
        seconds: Number(seconds),
        passed: Number(passed),
        failed: Number(failed),
        skipped: Number(skipped),
      };
    });
}

/** The lines that say what failed in a stage's log (TAP/spec failures, or its end). */
function failureExcerpt(log: string): string {
  const file = path.join(OUT, log);
  if (!fs.existsSync(file)) return `  (no ${log})`;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const marked = lines
    .map((l, i) => ({ l, i }))
    .filter(({ l }) => /^\s*(not ok|✖)|Error|requirement missing/.test(l));
  const pick = marked.length
    ? marked.slice(0, 40).map(({ l }) => l)
    : lines.filter(Boolean).slice(-30);
  return pick.map((l) => `    ${l}`).join('\n');
}

const LOGS: Record<string, string> = {
  'underlay doctor': 'doctor.log',
  'serve under systemd (HTTP + socket.io smoke test)': 'serve.log',
  'system tests': 'system.log',
  'labs (underlay test labs/, --walkthrough)': 'labs.log',
  'system tests, second group': 'system-2.log',
};

async function main(): Promise<void> {
  preconditions();
  fs.rmSync(OUT, { recursive: true, force: true });
  fs.mkdirSync(OUT, { recursive: true });

  // UNDERLAY_VM_RUN='command': the guest runs only that (from /opt/underlay), to debug.
  const only = process.env.UNDERLAY_VM_RUN;
  if (only) fs.writeFileSync(path.join(OUT, 'run-only'), `${only}\n`);

  const p0 = Date.now();
  let guest;
  try {
    guest = ensureGuest({
      repo: REPO,
      imagesDir: testConfig().imagesDir,
      cache: CACHE,
      log: (l) => process.stdout.write(`  prepare: ${l}\n`),
    });
  } catch (err) {
    process.stdout.write(`✖ prepare the guest: ${(err as Error).message}\n`);
    finish(0, 1, 0);
  }
  process.stdout.write(`✓ prepare the guest (${guest.release})  ${secs(p0)} s\n`);

  const b0 = Date.now();
  const console = fs.createWriteStream(path.join(OUT, 'console.log'));
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      ...['-accel', 'tcg,thread=multi', '-cpu', 'max', '-smp', '2', '-m', '6144'],
      ...['-nodefaults', '-display', 'none', '-no-reboot', '-serial', 'stdio', '-nic', 'none'],
      ...['-kernel', guest.kernel, '-initrd', guest.initrd],
      '-append',
      [
        'console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4',
        // cgroup v2 only, as on Debian 12 and the Vagrant box.
        'cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1',
        'systemd.show_status=0',
      ].join(' '),
      // snapshot=on: the guest's writes go to a temporary file; the cached disk stays clean.
      ...['-drive', `file=${guest.disk},if=virtio,format=raw,snapshot=on,cache=unsafe`],
      '-virtfs',
      `local,path=${REPO},mount_tag=project,security_model=none,readonly=on`,
      ...['-virtfs', `local,path=${OUT},mount_tag=out,security_model=none`],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let booted = false;
  let pending = '';
  const onLine = (line: string) => {
    if (line.startsWith('vm-guest ')) {
      booted = true;
      process.stdout.write(`✓ boot (${line.slice(9)})  ${secs(b0)} s\n`);
    } else if (line.startsWith('vm-begin ')) {
      process.stdout.write(`  … ${line.slice(9)}\n`);
    }
  };
  qemu.stdout.on('data', (b: Buffer) => {
    console.write(b);
    pending += b.toString('utf8');
    const lines = pending.split(/\r?\n/);
    pending = lines.pop() ?? '';
    for (const l of lines) onLine(l.trim());
  });
  let qemuErr = '';
  qemu.stderr.on('data', (b: Buffer) => (qemuErr += b.toString()));
  const timer = setTimeout(() => {
    process.stdout.write(`✖ the guest did not finish in ${TIMEOUT_MIN} min: stopping qemu\n`);
    qemu.kill('SIGKILL');
  }, TIMEOUT_MIN * 60_000);
  const code = await new Promise<number | null>((r) => qemu.on('exit', (c) => r(c)));
  clearTimeout(timer);
  console.end();

  const stages = readStages();
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const s of stages) {
    const ok = s.rc === 0 && s.failed === 0;
    process.stdout.write(
      `${ok ? '✓' : '✖'} ${s.name}  ${s.seconds} s  (${s.passed} passed, ${s.failed} failed${s.skipped ? `, ${s.skipped} skipped` : ''})\n`,
    );
    if (!ok) process.stdout.write(`${failureExcerpt(LOGS[s.name] ?? 'only.log')}\n`);
    passed += s.passed;
    failed += s.failed;
    skipped += s.skipped;
  }
  const missing = only ? [] : STAGES.filter((n) => !stages.some((s) => s.name === n));
  if (missing.length) {
    failed++;
    process.stdout.write(
      `✖ the guest stopped before: ${missing.join('; ')} (qemu exit ${code}${booted ? '' : ', never booted'})\n` +
        `  console (${path.join(OUT, 'console.log')}), last lines:\n` +
        fs
          .readFileSync(path.join(OUT, 'console.log'), 'utf8')
          .split('\n')
          .slice(-25)
          .map((l) => `    ${l}`)
          .join('\n') +
        (qemuErr ? `\n  qemu: ${qemuErr.trim()}` : '') +
        '\n',
    );
  }
  process.stdout.write(`  logs, TAP and JUnit: ${OUT}\n`);
  finish(passed, failed, skipped);
}

void main();

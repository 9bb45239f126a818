/**
 * npm run bench:sandbox - sandbox figures on this machine, one run, with
 * `unshare` and `bwrap` doing comparable work as baselines. Prints a
 * Markdown table for docs/benchmarks.md. Figures, not assertions.
 *
 *   node dist/test/bench/sandbox.bench.js [--cycles 100] [--idle 100] [--concurrent 500] [--gap 0]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { measureMigration } from '../../server/cli/doctor';
import { loadConfig } from '../../server/config';
import { SandboxManager, type Sandbox } from '../../server/sandbox/index';
import { Store } from '../../server/store/store';
import { createLogger } from '../../server/util/logger';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const CYCLES = arg('cycles', 100);
const IDLE = arg('idle', 100);
const CONCURRENT = arg('concurrent', 500);
// Pause between cycles (ms): sporadic creates, as in a class, pay the v1
// cgroup migration's RCU grace period that back-to-back ones may share.
const GAP = arg('gap', 0);

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
const f = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
function memAvailableKiB(): number {
  return Number(/^MemAvailable:\s+(\d+)/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1]);
}
function dropCaches(): void {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    // not allowed here: figures are a bit noisier
  }
}

function timeCmd(cmd: string, args: string[], n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { stdio: 'ignore' });
    if (r.status !== 0)
      throw new Error(`${cmd} ${args.join(' ')} failed: ${r.status} ${r.error ?? ''}`);
    out.push(ms(t0));
  }
  return out;
}

/** Waits (up to 2 s) until the manager's helper and spare disk are ready ahead. */
async function aheadReady(m: SandboxManager): Promise<boolean> {
  const until = Date.now() + 2000;
  while (!(m.warmHelperWaiting && m.spareDiskReady)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 1));
  }
  return true;
}

async function main(): Promise<void> {
  const config = loadConfig({
    ...process.env,
    UNDERLAY_STATE_DIR: process.env.UNDERLAY_BENCH_STATE_DIR ?? '/var/lib/underlay-bench',
    UNDERLAY_IMAGES_DIR: process.env.UNDERLAY_IMAGES_DIR ?? '/var/lib/underlay/images',
    UNDERLAY_UID_BASE: String(100000 + 65536 * 3000),
  });
  config.maxSessions = Math.max(1000, CONCURRENT + 10);
  // Host-side create steps ('clone' is the whole helper run: idmap-lower .. init ops).
  const steps = new Map<string, number[]>();
  let timeSteps = false;
  const m = new SandboxManager({
    config,
    store: new Store(config.stateDir),
    logger: createLogger('error'),
    // As `underlay serve` runs it: a helper and a disk wait ahead for each create.
    warmHelper: true,
    spareDisk: true,
    onStep: (name, t) => {
      if (timeSteps) steps.set(name, [...(steps.get(name) ?? []), t]);
    },
  });
  await m.reap({ all: true });
  const rows: [string, string, string, string][] = [];
  const row = (what: string, xs: number[], note = '') =>
    rows.push([what, f(pct(xs, 50)), f(pct(xs, 99)), note]);

  // warm-up
  for (let i = 0; i < 5; i++) {
    const sb = await m.create();
    await sb.exec(['true']);
    await m.teardown(sb.record);
  }

  const create: number[] = [];
  const execTrue: number[] = [];
  const teardown: number[] = [];
  const total: number[] = [];
  // bwrap, timed in the same cycles as the creates (just before each), so
  // the ratio compares the two at the same moments of a machine whose speed
  // drifts by tens of percent within a minute.
  const hasBwrap = spawnSync('bwrap', ['--version']).status === 0;
  const bwrapArgs = [
    '--unshare-all',
    '--ro-bind',
    '/',
    '/',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    'true',
  ];
  const bwrapPaired: number[] = [];
  let notAhead = 0;
  timeSteps = true;
  for (let i = 0; i < CYCLES; i++) {
    // As a class's server meets a create: what it keeps ahead (a helper, a
    // spare disk) made since the last one. Back to back they may not be.
    if (!(await aheadReady(m))) notAhead++;
    // The first bwrap after a teardown runs ~10 % slower (caches, the vCPU
    // waking): an untimed one takes that, so neither side is charged with it.
    if (hasBwrap) bwrapPaired.push(timeCmd('bwrap', bwrapArgs, 2)[1]!);
    const t0 = process.hrtime.bigint();
    const sb = await m.create();
    create.push(ms(t0));
    const t1 = process.hrtime.bigint();
    const r = await sb.exec(['true']);
    if (r.code !== 0) throw new Error(`exec true failed: ${r.stderr}`);
    execTrue.push(ms(t1));
    const t2 = process.hrtime.bigint();
    await m.teardown(sb.record);
    teardown.push(ms(t2));
    total.push(ms(t0));
    if (GAP > 0) await new Promise((r) => setTimeout(r, GAP));
  }
  row(
    'create (all namespaces, cgroups, idmapped overlay, pivot_root, init)',
    create,
    `${CYCLES} cycles${GAP ? `, ${GAP} ms apart` : ''}`,
  );
  if (hasBwrap) {
    const ratios = create.map((c, i) => c / bwrapPaired[i]!);
    row(
      'bwrap, one just before each create above',
      bwrapPaired,
      `create ÷ bwrap: ${f(pct(create, 50) / pct(bwrapPaired, 50))} (p50s), ${f(pct(ratios, 50))} (median of the pairs)`,
    );
  }
  if (notAhead > 0) console.error(`${notAhead} creates found no helper or spare disk ready ahead`);
  row('exec `true` in it (join: spawn helper, setns, fork, exec, wait)', execTrue);
  row('teardown (kill, unmount, rm, rmdir, release ids)', teardown);
  row('**create → exec `true` → teardown**', total);
  timeSteps = false;
  for (const [name, xs] of steps) row(`create step \`${name}\``, xs, 'host side');

  // Join alone, on one live sandbox.
  const sb = await m.create();
  const join: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t0 = process.hrtime.bigint();
    await sb.exec(['true']);
    join.push(ms(t0));
  }
  row('join + exec `true` (one sandbox, 200 times)', join);
  await m.teardown(sb.record);

  // Baselines, spawned the same way (node spawnSync) so the spawn cost is shared.
  row('baseline: `true` via spawnSync (process floor)', timeCmd('true', [], 100));
  row(
    'baseline: `unshare --user --map-root-user --pid --fork --mount --uts --ipc --net --cgroup true`',
    timeCmd(
      'unshare',
      [
        '--user',
        '--map-root-user',
        '--pid',
        '--fork',
        '--mount',
        '--uts',
        '--ipc',
        '--net',
        '--cgroup',
        'true',
      ],
      100,
    ),
    'no cgroups, no rootfs',
  );
  if (hasBwrap) {
    row(
      'baseline: `bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev true`',
      timeCmd('bwrap', bwrapArgs, 100),
      'no cgroups, no overlay; 100 back to back',
    );
  }

  // Memory per idle sandbox.
  dropCaches();
  const before = memAvailableKiB();
  const idle: Sandbox[] = [];
  for (let i = 0; i < IDLE; i++) idle.push(await m.create());
  await new Promise((r) => setTimeout(r, 1000));
  const after = memAvailableKiB();
  const perSandboxKiB = (before - after) / IDLE;
  let memcg = 0;
  for (const s of idle) {
    const d = s.record.resources.cgroupDirs.find((x) => x.includes('/memory/'));
    if (d) memcg += Number(fs.readFileSync(`${d}/memory.usage_in_bytes`, 'utf8'));
  }
  const tdIdle: number[] = [];
  for (const s of idle) {
    const t0 = process.hrtime.bigint();
    await m.teardown(s.record);
    tdIdle.push(ms(t0));
  }

  // Concurrency: N idle sandboxes at once.
  const t0 = process.hrtime.bigint();
  const many: Sandbox[] = [];
  let concurrentError = '';
  try {
    for (let i = 0; i < CONCURRENT; i++) many.push(await m.create());
  } catch (err) {
    concurrentError = (err as Error).message;
  }
  const createMany = ms(t0);
  let alive = 0;
  for (const s of many) if (fs.existsSync(`/proc/${s.initPid}`)) alive++;
  const probe = many.length ? await many[many.length - 1]!.exec(['hostname']) : undefined;
  const t1 = process.hrtime.bigint();
  for (const s of many) await m.teardown(s.record);
  const tearMany = ms(t1);

  // Whether this kernel's cgroup migrations wait for an RCU grace period
  // (favordynmods off) decides much of a v1 create (docs/sandbox.md#cgroup-migrations).
  const migration = await measureMigration();
  const lines: string[] = [];
  lines.push(
    `Sandbox benchmark - ${new Date().toISOString()} - ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${os.release()}, cgroup ${m.driver.mode}, ` +
      `one cgroup migration after a quiet spell: ${migration === null ? 'not measured' : `${migration.toFixed(2)} ms`}`,
  );
  lines.push('');
  lines.push('| what | p50 ms | p99 ms | note |');
  lines.push('| --- | ---: | ---: | --- |');
  for (const [a, b, c, d] of rows) lines.push(`| ${a} | ${b} | ${c} | ${d} |`);
  lines.push('');
  lines.push(`| memory | value |`);
  lines.push(`| --- | ---: |`);
  lines.push(
    `| host MemAvailable drop per idle sandbox (${IDLE} idle) | ${(perSandboxKiB / 1024).toFixed(2)} MiB |`,
  );
  lines.push(
    `| memcg charge per idle sandbox (mean of ${IDLE}) | ${(memcg / IDLE / 2 ** 20).toFixed(2)} MiB |`,
  );
  lines.push(
    `| teardown of an idle sandbox, p50 / p99 | ${f(pct(tdIdle, 50))} / ${f(pct(tdIdle, 99))} ms |`,
  );
  lines.push('');
  lines.push(
    `Concurrency: ${many.length} of ${CONCURRENT} idle sandboxes created in ${(createMany / 1000).toFixed(1)} s, ${alive} alive at once, ` +
      `the last one answered \`hostname\`: ${probe?.code === 0 ? 'yes' : 'no'}; all torn down in ${(tearMany / 1000).toFixed(1)} s.` +
      (concurrentError ? ` Stopped early: ${concurrentError}` : ''),
  );
  process.stdout.write(lines.join('\n') + '\n');
  await m.dropAhead();
  m.store.close();
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});

/**
 * npm run bench:cli - whole-process time of short `underlay` commands (node
 * start, module loading, exit), the cost every CLI call and every test that
 * shells out pays. Figures, not assertions.
 *
 *   node dist/test/bench/cli.bench.js [--runs 30] [--bin path/to/bin/underlay]
 *
 * `--bin` measures another checkout's build (e.g. the previous commit's, for
 * a before/after in docs/benchmarks.md).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const argAt = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const RUNS = Number(argAt('runs') ?? 30);
const BIN = path.resolve(argAt('bin') ?? path.join(__dirname, '..', '..', '..', 'bin', 'underlay'));

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}

function time(args: string[]): number[] {
  const out: number[] = [];
  // One warm-up run so the page cache holds the modules, as on a used host.
  spawnSync(process.execPath, [BIN, ...args], { stdio: 'ignore' });
  for (let i = 0; i < RUNS; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [BIN, ...args], { stdio: 'ignore' });
    if (r.status !== 0 && args[0] !== 'validate')
      throw new Error(`underlay ${args.join(' ')} exited ${r.status}`);
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

const rows: [string, number[]][] = [
  ['`node -e 0` (floor)', []],
  ['`underlay --version`', time(['--version'])],
  ['`underlay --help`', time(['--help'])],
  ['`underlay validate` (all labs)', time(['validate'])],
];
for (let i = 0; i < RUNS; i++) {
  const t0 = process.hrtime.bigint();
  spawnSync(process.execPath, ['-e', '0'], { stdio: 'ignore' });
  rows[0]?.[1].push(Number(process.hrtime.bigint() - t0) / 1e6);
}
process.stdout.write(`underlay CLI, ${RUNS} runs each, ${BIN}\n\n`);
process.stdout.write('| command | p50 ms | p95 ms |\n| --- | --- | --- |\n');
for (const [name, xs] of rows) {
  process.stdout.write(`| ${name} | ${pct(xs, 50).toFixed(1)} | ${pct(xs, 95).toFixed(1)} |\n`);
}

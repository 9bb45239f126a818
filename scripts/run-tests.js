#!/usr/bin/env node
// The whole test suite, in stages: lint, unit, system (root, real kernel),
// e2e (headless Chromium against `underlay serve`).
// vm (the same system and lab tests in a Debian 12 guest under qemu: kernel
// 6.1, cgroup v2 only, systemd; test/vm/run.ts).
// Each stage writes TAP and JUnit into test/artifacts/ (UNDERLAY_TEST_ARTIFACTS
// elsewhere, e.g. on a read-only checkout); the last line printed is
// "N passed, N failed" and the exit status is non-zero on any failure.
//
//   node scripts/run-tests.js [--only lint|unit|system|labs|e2e|vm] [--skip-lint]
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const artifacts = process.env.UNDERLAY_TEST_ARTIFACTS || path.join(root, 'test', 'artifacts');
fs.mkdirSync(artifacts, { recursive: true });
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const want = (stage) =>
  (!only || only === stage) && !(stage === 'lint' && args.includes('--skip-lint'));

let passed = 0;
let failed = 0;
let skipped = 0;
const failures = [];
// TAP files this run wrote: their failures are repeated at the end, where a
// CI log's tail shows them (the stages' own output scrolls far up).
const tapFiles = [];

/** The leaf failures in a TAP file: name, where, and the error's first lines. */
function tapFailures(file) {
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n') : [];
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)not ok \d+ - (.*)$/.exec(lines[i]);
    if (!m) continue;
    const block = [];
    if (lines[i + 1] === `${m[1]}  ---`) {
      for (let j = i + 2; j < lines.length && lines[j] !== `${m[1]}  ...`; j++)
        block.push(lines[j].slice(m[1].length + 2));
    }
    if (block.some((l) => /^failureType: 'subtestsFailed'/.test(l))) continue;
    const keep = block.filter((l) => !/^(duration_ms|type):/.test(l));
    const stack = keep.findIndex((l) => /^stack:/.test(l));
    const detail = (stack >= 0 ? keep.slice(0, stack + 6) : keep).slice(0, 40);
    out.push({ name: m[2], detail });
  }
  return out;
}

function run(cmd, argv, env = {}) {
  return spawnSync(cmd, argv, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
}

function check(name, cmd, argv) {
  process.stdout.write(`\n── ${name}\n`);
  const r = run(cmd, argv);
  if (r.status === 0) passed++;
  else {
    failed++;
    failures.push(name);
  }
}

// Counts from the TAP summary node's runner writes ("# pass N" ...).
function nodeTests(stage, files, extra = []) {
  process.stdout.write(`\n── ${stage} tests\n`);
  const tap = path.join(artifacts, `${stage}.tap`);
  tapFiles.push(tap);
  const junit = path.join(artifacts, `${stage}.junit.xml`);
  const r = run(process.execPath, [
    '--test',
    ...extra,
    '--test-reporter=spec',
    '--test-reporter-destination=stdout',
    '--test-reporter=tap',
    `--test-reporter-destination=${tap}`,
    '--test-reporter=junit',
    `--test-reporter-destination=${junit}`,
    ...files,
  ]);
  const text = fs.existsSync(tap) ? fs.readFileSync(tap, 'utf8') : '';
  const count = (k) => Number((new RegExp(`^# ${k} (\\d+)$`, 'm').exec(text) || [])[1] || 0);
  const p = count('pass');
  const f = count('fail') + count('cancelled');
  skipped += count('skipped');
  passed += p;
  failed += f;
  if (f > 0 || r.status !== 0) failures.push(`${stage} tests`);
  if (r.status !== 0 && f === 0) failed++; // the runner itself failed
  if (p + f === 0) {
    failed++;
    failures.push(`${stage}: no test ran`);
  }
}

const dist = (...p) => path.join(root, 'dist', 'test', ...p);
const listTests = (dir) =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => f.endsWith('.test.js'))
        .map((f) => path.join(dir, f))
    : [];

if (want('lint')) {
  check('typecheck (tsc -b)', 'npx', ['tsc', '-b']);
  check('eslint', 'npx', ['eslint', '.']);
  check('prettier --check', 'npx', ['prettier', '--check', '.']);
  check('clang-format + shellcheck + doc references', 'bash', ['scripts/lint-native']);
  if (spawnSync('vagrant', ['--version']).status === 0) {
    check('vagrant validate', 'vagrant', ['validate', '--ignore-provider']);
  } else if (process.env.CI === 'true') {
    check('vagrant validate (vagrant is not installed)', 'false', []);
  }
}
if (want('unit')) nodeTests('unit', listTests(dist('unit')));
if (want('system')) {
  // Leftovers of an interrupted earlier run must not skew this one.
  const env = require(path.join(root, 'dist', 'test', 'helpers', 'env.js'));
  run(process.execPath, [env.CLI, 'sandbox', 'reap', '--all'], env.testEnv());
  // Lab sessions of earlier runs keep their disks (and id ranges): not needed here.
  run(process.execPath, [env.CLI, 'sandbox', 'disks', '--drop-parked'], env.testEnv());
  // UNDERLAY_SYSTEM_SKIP=a.test.js,b.test.js: the VM tier leaves out the files
  // that do not depend on the kernel or distro (they ran on the host).
  const skip = (process.env.UNDERLAY_SYSTEM_SKIP || '').split(',').filter(Boolean);
  if (skip.length) process.stdout.write(`\nleft out in this tier: ${skip.join(', ')}\n`);
  // UNDERLAY_SYSTEM_ONLY=a.test.js,...: only these (the VM tier runs the
  // system tests as two groups side by side).
  const only = (process.env.UNDERLAY_SYSTEM_ONLY || '').split(',').filter(Boolean);
  if (only.length) process.stdout.write(`\nonly: ${only.join(', ')}\n`);
  const files = listTests(dist('system')).filter(
    (f) =>
      !skip.includes(path.basename(f)) && (only.length === 0 || only.includes(path.basename(f))),
  );
  // UNDERLAY_SYSTEM_ONE_PROCESS=1 (the VM tier): every file in one node
  // process instead of one each. Under emulation a node start and the
  // server's module graph cost ~8 s of CPU per file; the files already run
  // one at a time and clean up after themselves.
  if (process.env.UNDERLAY_SYSTEM_ONE_PROCESS === '1' && files.length > 1) {
    const entry = path.join(artifacts, 'system-files.js');
    fs.writeFileSync(entry, files.map((f) => `require(${JSON.stringify(f)});\n`).join(''));
    nodeTests('system', [entry]);
  } else nodeTests('system', files, ['--test-concurrency=1']);
}
if (want('labs')) {
  // Every lab end to end: fail before, near misses still fail, pass after.
  process.stdout.write(
    `\n── labs (underlay test labs/ --repeat ${process.env.UNDERLAY_LABS_REPEAT || 2})\n`,
  );
  const env = require(path.join(root, 'dist', 'test', 'helpers', 'env.js'));
  const tapFile = path.join(artifacts, 'labs.tap');
  tapFiles.push(tapFile);
  // One run, both report sets (TAP for the count, JUnit for CI viewers).
  const r = run(
    process.execPath,
    [
      env.CLI,
      'test',
      'labs',
      '--repeat',
      process.env.UNDERLAY_LABS_REPEAT || '2',
      '--reporter',
      'tap',
      '-o',
      tapFile,
      '--junit',
      path.join(artifacts, 'labs.junit.xml'),
    ],
    env.testEnv(),
  );
  // The lab texts as a student does them: code blocks typed into the terminals.
  process.stdout.write('\n── labs (underlay test labs/ --walkthrough)\n');
  const walkFile = path.join(artifacts, 'labs-walkthrough.tap');
  tapFiles.push(walkFile);
  const w = run(
    process.execPath,
    [env.CLI, 'test', 'labs', '--walkthrough', '--reporter', 'tap', '-o', walkFile],
    env.testEnv(),
  );
  for (const [file, res] of [
    [tapFile, r],
    [walkFile, w],
  ]) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    const ok = (text.match(/^ok \d+/gm) || []).filter((l) => !/# SKIP/.test(l)).length;
    const notOk = (text.match(/^not ok \d+/gm) || []).length;
    skipped += (text.match(/# SKIP/g) || []).length;
    passed += ok;
    failed += notOk;
    if (notOk > 0 || res.status !== 0 || ok === 0) failures.push(`labs (${path.basename(file)})`);
    if (res.status !== 0 && notOk === 0) failed++;
  }
}
if (want('e2e')) nodeTests('e2e', listTests(dist('e2e')), ['--test-concurrency=1']);
if (want('vm')) {
  // The guest prints one line per stage as it goes; its counts are added to ours.
  const summary = path.join(artifacts, 'vm', 'summary.json');
  fs.rmSync(summary, { force: true });
  const started = Date.now();
  const r = run(process.execPath, [dist('vm', 'run.js')]);
  const vmDir = path.join(artifacts, 'vm');
  if (fs.existsSync(vmDir))
    for (const f of fs.readdirSync(vmDir).filter((n) => n.endsWith('.tap')))
      if (fs.statSync(path.join(vmDir, f)).mtimeMs >= started) tapFiles.push(path.join(vmDir, f));
  const c = fs.existsSync(summary) ? JSON.parse(fs.readFileSync(summary, 'utf8')) : undefined;
  if (c) {
    passed += c.passed;
    failed += c.failed;
    skipped += c.skipped;
  }
  if (!c || c.failed > 0 || r.status !== 0) failures.push('vm');
  if (!c || (r.status !== 0 && c.failed === 0)) failed++; // the tier itself failed
}

const details = tapFiles.flatMap((f) =>
  tapFailures(f).map((t) => ({ ...t, file: path.relative(root, f) })),
);
if (details.length) {
  process.stdout.write('\n── what failed (from the TAP files)\n');
  for (const d of details.slice(0, 10))
    process.stdout.write(
      `✖ ${d.name}  [${d.file}]\n${d.detail.map((l) => `    ${l}\n`).join('')}`,
    );
  if (details.length > 10) process.stdout.write(`… and ${details.length - 10} more\n`);
}
process.stdout.write('\n');
if (failures.length) process.stdout.write(`failed: ${failures.join(', ')}\n`);
process.stdout.write(
  `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`,
);
process.exit(failed > 0 ? 1 : 0);

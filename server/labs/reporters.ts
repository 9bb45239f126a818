/**
 * Reports for `underlay test`: pretty (for people), tap and junit (for CI).
 */
import type { LabResult } from './runner';

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
// XML 1.0 forbids most control characters, which terminal output may hold.
// eslint-disable-next-line no-control-regex
const clean = (s: string) => esc(s.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '?'));
const secs = (ms: number) => (ms / 1000).toFixed(3);

export function summary(results: LabResult[]): { passed: number; failed: number; na: number } {
  return {
    passed: results.filter((r) => r.status === 'passed').length,
    failed: results.filter((r) => r.status === 'failed').length,
    na: results.filter((r) => r.status === 'not-applicable').length,
  };
}

export function pretty(results: LabResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    const mark = r.status === 'passed' ? '✔' : r.status === 'failed' ? '✖' : '○';
    out.push(
      `${mark} ${r.id}${r.run > 1 ? ` (run ${r.run})` : ''} - ${r.status}${r.reason ? `: ${r.reason}` : ''} (${secs(r.ms)} s)`,
    );
    for (const s of r.steps) {
      out.push(`    ${s.ok ? '✔' : '✖'} ${s.id} (${secs(s.ms)} s)`);
      for (const p of s.phases)
        if (!p.ok) out.push(`        ✖ ${p.phase}: ${p.detail.split('\n').join('\n          ')}`);
    }
  }
  const t = summary(results);
  out.push(
    '',
    `labs: ${t.passed} passed, ${t.failed} failed, ${t.na} not applicable on this host; ${secs(results.reduce((n, r) => n + r.ms, 0))} s`,
  );
  return out.join('\n');
}

export function tap(results: LabResult[]): string {
  const out = ['TAP version 13'];
  let n = 0;
  for (const r of results) {
    if (r.status === 'not-applicable') {
      out.push(`ok ${++n} - ${r.id} # SKIP ${r.reason}`);
      continue;
    }
    for (const s of r.steps) {
      out.push(
        `${s.ok ? 'ok' : 'not ok'} ${++n} - ${r.id}/${s.id}${r.run > 1 ? ` (run ${r.run})` : ''}`,
      );
      if (!s.ok) {
        out.push('  ---');
        for (const p of s.phases.filter((x) => !x.ok))
          out.push(`  ${JSON.stringify(p.phase)}: ${JSON.stringify(p.detail)}`);
        out.push('  ...');
      }
    }
  }
  out.push(`1..${n}`);
  return out.join('\n');
}

export function junit(results: LabResult[]): string {
  const out = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const t = summary(results);
  out.push(
    `<testsuites name="underlay labs" tests="${results.reduce((n, r) => n + Math.max(1, r.steps.length), 0)}" failures="${t.failed}">`,
  );
  for (const r of results) {
    const failures = r.steps.filter((s) => !s.ok).length;
    out.push(
      `  <testsuite name="${esc(r.id)}${r.run > 1 ? ` run ${r.run}` : ''}" tests="${Math.max(1, r.steps.length)}" failures="${failures}" skipped="${r.status === 'not-applicable' ? 1 : 0}" time="${secs(r.ms)}" file="${esc(r.file)}">`,
    );
    if (r.status === 'not-applicable') {
      out.push(
        `    <testcase name="${esc(r.id)}" classname="${esc(r.id)}" time="0"><skipped message="${clean(r.reason ?? '')}"/></testcase>`,
      );
    }
    for (const s of r.steps) {
      out.push(`    <testcase name="${esc(s.id)}" classname="${esc(r.id)}" time="${secs(s.ms)}">`);
      for (const p of s.phases.filter((x) => !x.ok))
        out.push(`      <failure message="${clean(p.phase)}">${clean(p.detail)}</failure>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return out.join('\n');
}

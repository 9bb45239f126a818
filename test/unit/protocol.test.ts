import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  HandshakeAuth,
  LIMITS,
  TermInput,
  TermOpen,
  TermResize,
  parse,
} from '../../server/protocol/index';

test('valid payloads parse', () => {
  assert.ok(parse(TermOpen, 'term:open', { cols: 80, rows: 24 }).ok);
  assert.ok(parse(TermOpen, 'term:open', { term: 't1', cols: 80, rows: 24, offset: 10 }).ok);
  assert.ok(parse(TermInput, 'term:input', { term: 't1', data: 'ls\r' }).ok);
  assert.ok(parse(HandshakeAuth, 'handshake', { v: 1, session: 'abc', token: 'x'.repeat(32) }).ok);
});

test('bad payloads are refused with the field named', () => {
  const cases: [unknown, RegExp][] = [
    [{ term: 't1', data: 'x'.repeat(LIMITS.inputChars + 1) }, /term:input: data: Too big/],
    [{ term: '../x', data: 'a' }, /term:input: term: an id/],
    [{ term: 't1', data: 'a', extra: 1 }, /term:input: payload: Unrecognized key/],
    [{ term: 't1' }, /term:input: data/],
    ['junk', /term:input: payload/],
  ];
  for (const [payload, re] of cases) {
    const r = parse(TermInput, 'term:input', payload);
    assert.equal(r.ok, false, JSON.stringify(payload));
    if (!r.ok) {
      assert.equal(r.error.code, 'bad-request');
      assert.match(r.error.message, re);
    }
  }
  assert.equal(parse(TermResize, 'term:resize', { term: 't1', cols: 501, rows: 10 }).ok, false);
  assert.equal(
    parse(HandshakeAuth, 'handshake', { v: 2, session: 'abc', token: 'x'.repeat(32) }).ok,
    false,
  );
});

test('term:open: a size is needed for a new terminal, optional (both or neither) when attaching', () => {
  assert.ok(parse(TermOpen, 'term:open', { term: 't1' }).ok, 'attach keeping the size');
  assert.ok(parse(TermOpen, 'term:open', { term: 't1', offset: 0 }).ok);
  const noSize = parse(TermOpen, 'term:open', { name: 'T2' });
  assert.equal(noSize.ok, false);
  if (!noSize.ok) assert.match(noSize.error.message, /cols: a new terminal needs cols and rows/);
  const half = parse(TermOpen, 'term:open', { term: 't1', cols: 80 });
  assert.equal(half.ok, false);
  if (!half.ok) assert.match(half.error.message, /give cols and rows together/);
});

test('handshake: a watch names cohort, token, student key and lab, and nothing else', () => {
  const watch = {
    cohort: 'fri-101',
    token: 't'.repeat(43),
    student: '0123456789abcdef',
    lab: 'ns-pid',
  };
  assert.ok(parse(HandshakeAuth, 'handshake', { v: 1, watch }).ok);
  for (const bad of [
    { v: 1, watch, session: 'abc' },
    { v: 1, watch: { ...watch, student: 'Ann' } },
    { v: 1, watch: { ...watch, cohort: '../x' } },
    { v: 1, watch: { ...watch, extra: 1 } },
    { v: 1, watch: { ...watch, token: 'short' } },
  ])
    assert.equal(parse(HandshakeAuth, 'handshake', bad).ok, false, JSON.stringify(bad));
});

'use client';
/**
 * One step at a time: predict-first question, instructions with Run/Copy,
 * an answer field for knowledge checks, Check with its message, hints on
 * demand, skip and reset - and a live mode that checks while you work.
 */
import { useEffect, useRef, useState } from 'react';
import type {
  CheckResponse,
  HintResponse,
  LabProgress,
  LabView,
  StepView,
} from '../../../server/protocol/index';
import { api, describeError } from '../../lib/api';
import { Markdown } from '../../lib/markdown';
import { ErrorBox, type ErrorInfo } from './lab-page';

type Result = { kind: 'pass' | 'fail'; message: string; latched?: boolean } | null;

function useStored<T>(key: string, initial: T): [T, (v: T) => void] {
  const [v, setV] = useState<T>(initial);
  useEffect(() => {
    try {
      const s = localStorage.getItem(key);
      setV(s ? (JSON.parse(s) as T) : initial);
    } catch {
      setV(initial);
    }
  }, [key]);
  return [
    v,
    (nv: T) => {
      setV(nv);
      localStorage.setItem(key, JSON.stringify(nv));
    },
  ];
}

function Predict({ labId, step }: { labId: string; step: StepView }) {
  const p = step.predict;
  const [state, setState] = useStored<{ guess: string; revealed: boolean }>(
    `underlay.${labId}.${step.id}.predict`,
    { guess: '', revealed: false },
  );
  if (!p) return null;
  return (
    <section className="predict" aria-label="Predict first">
      <div className="label">Predict first</div>
      <Markdown text={p.question} />
      {p.choices ? (
        <div className="choices" role="group" aria-label="Your prediction">
          {p.choices.map((c) => (
            <button
              key={c}
              aria-pressed={state.guess === c}
              disabled={state.revealed}
              onClick={() => setState({ ...state, guess: c })}
            >
              {c}
            </button>
          ))}
        </div>
      ) : (
        <input
          type="text"
          aria-label="Your prediction"
          placeholder="Your guess"
          value={state.guess}
          disabled={state.revealed}
          onChange={(e) => setState({ ...state, guess: e.target.value })}
          style={{ width: '100%', margin: '0.3rem 0' }}
        />
      )}
      {state.revealed ? (
        <div>
          <strong>Answer:</strong> <Markdown text={p.answer} />
        </div>
      ) : (
        <button
          className="small"
          disabled={!state.guess.trim()}
          onClick={() => setState({ ...state, revealed: true })}
        >
          Lock in and reveal
        </button>
      )}
    </section>
  );
}

export function StepPanel({
  lab,
  progress,
  selected,
  onSelect,
  onProgress,
  canRun,
  run,
}: {
  lab: LabView;
  progress: LabProgress;
  selected: number;
  onSelect: (i: number) => void;
  onProgress: (p: LabProgress) => void;
  canRun: boolean;
  run: (terminal: string, code: string) => void;
}) {
  const step = lab.steps[selected];
  const sp = step ? progress.steps[step.id] : undefined;
  const [answer, setAnswer] = useState('');
  const [result, setResult] = useState<Result>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<ErrorInfo | null>(null);
  const [hints, setHints] = useStored<string[]>(`underlay.${lab.id}.${step?.id}.hints`, []);
  const [noMoreHints, setNoMoreHints] = useState(false);
  const [live, setLive] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);

  useEffect(() => {
    setResult(null);
    setError(null);
    setAnswer('');
    setNoMoreHints(false);
    heading.current?.focus();
  }, [selected]);

  const base = `/api/labs/${encodeURIComponent(lab.id)}/steps/${encodeURIComponent(step?.id ?? '')}`;

  const check = async (quiet = false) => {
    if (!step) return;
    if (!quiet) setBusy('check');
    setError(null);
    try {
      const r = await api<CheckResponse>('POST', `${base}/check`, step.input ? { answer } : {});
      onProgress(r.progress);
      if (!quiet || r.passed)
        setResult({ kind: r.passed ? 'pass' : 'fail', message: r.message, latched: r.latched });
      if (r.passed) setLive(false);
    } catch (e) {
      if (!quiet) setError(describeError(e));
    } finally {
      if (!quiet) setBusy(null);
    }
  };

  // Live mode: check every few seconds while the student works (not for typed answers).
  useEffect(() => {
    if (!live || !step || step.input || sp?.passed) return;
    const t = setInterval(() => void check(true), 4000);
    return () => clearInterval(t);
  }, [live, step?.id, sp?.passed]);

  const hint = async () => {
    setBusy('hint');
    setError(null);
    try {
      const r = await api<HintResponse>('POST', `${base}/hint`);
      onProgress(r.progress);
      if (r.hint) setHints([...hints, r.hint]);
      else setNoMoreHints(true);
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(null);
    }
  };

  const simple = async (action: 'skip' | 'reset') => {
    setBusy(action);
    try {
      const p = await api<LabProgress>('POST', `${base}/${action}`);
      onProgress(p);
      setResult(null);
      if (action === 'reset') setHints([]);
      if (action === 'skip') onSelect(Math.min(selected + 1, lab.steps.length));
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(null);
    }
  };

  return (
    <>
      <h1 style={{ fontSize: '1.35rem', margin: '0.2rem 0' }}>{lab.title}</h1>
      {selected === 0 && !sp?.passed && lab.objectives.length > 0 && (
        <details open>
          <summary className="muted">What you will learn · about {lab.duration} min</summary>
          <ul>
            {lab.objectives.map((o) => (
              <li key={o}>{o}</li>
            ))}
          </ul>
        </details>
      )}
      <nav aria-label="Steps">
        <ol className="steps-nav">
          {lab.steps.map((s, i) => {
            const st = progress.steps[s.id];
            return (
              <li key={s.id}>
                <button
                  className={st?.passed ? 'passed' : st?.skipped ? 'skipped' : ''}
                  aria-current={i === selected ? 'step' : undefined}
                  aria-label={`Step ${i + 1}: ${s.title}${st?.passed ? ' (done)' : st?.skipped ? ' (skipped)' : ''}`}
                  title={s.title}
                  onClick={() => onSelect(i)}
                >
                  {st?.passed ? '✓' : i + 1}
                </button>
              </li>
            );
          })}
          <li>
            <button
              aria-current={selected === lab.steps.length ? 'step' : undefined}
              aria-label="Wrap-up"
              onClick={() => onSelect(lab.steps.length)}
            >
              ★
            </button>
          </li>
        </ol>
      </nav>
      {!step ? (
        <section className="step" aria-labelledby="step-title">
          <h2 id="step-title" tabIndex={-1} ref={heading}>
            {progress.current >= lab.steps.length ? 'Lab complete' : 'Wrap-up'}
          </h2>
          {progress.current < lab.steps.length && (
            <p className="muted">
              Some steps are not done yet:{' '}
              <button className="link" onClick={() => onSelect(progress.current)}>
                go to step {progress.current + 1}
              </button>
              .
            </p>
          )}
          {lab.outro && <Markdown text={lab.outro} />}
        </section>
      ) : (
        <section className="step" aria-labelledby="step-title" data-step={step.id}>
          <h2 id="step-title" tabIndex={-1} ref={heading}>
            {selected + 1}. {step.title}
            {sp?.passed && <span style={{ color: 'var(--ok)' }}> ✓</span>}
          </h2>
          <Predict labId={lab.id} step={step} />
          <Markdown
            text={step.instructions}
            target={{ defaultTerminal: lab.terminals[0] ?? 'T1', ...(canRun ? { run } : {}) }}
          />
          <div className="check-box">
            {step.input && (
              <label style={{ display: 'flex', flexDirection: 'column', gap: '0.3rem' }}>
                <span>{step.input.prompt}</span>
                <input
                  type="text"
                  value={answer}
                  placeholder={step.input.placeholder ?? ''}
                  onChange={(e) => setAnswer(e.target.value)}
                  onKeyDown={(e) => {
                    if (e.key === 'Enter' && answer.trim()) void check();
                  }}
                  aria-label={step.input.prompt}
                />
              </label>
            )}
            <div className="check-row">
              <button
                className="primary"
                onClick={() => void check()}
                disabled={!canRun || busy !== null || (!!step.input && !answer.trim())}
              >
                {busy === 'check' ? 'Checking…' : 'Check'}
              </button>
              {step.hints > 0 && (
                <button onClick={() => void hint()} disabled={!canRun || busy !== null}>
                  {busy === 'hint' ? 'Looking…' : 'Hint'}
                </button>
              )}
              {!step.input && (
                <label className="muted" style={{ fontSize: '0.9rem' }}>
                  <input
                    type="checkbox"
                    checked={live}
                    disabled={!canRun || sp?.passed}
                    onChange={(e) => setLive(e.target.checked)}
                  />{' '}
                  Check as I work
                </label>
              )}
              <span style={{ marginLeft: 'auto', display: 'flex', gap: '0.4rem' }}>
                {!sp?.passed && !sp?.skipped && (
                  <button
                    className="small"
                    onClick={() => void simple('skip')}
                    disabled={busy !== null}
                  >
                    Skip
                  </button>
                )}
                {(sp?.passed || sp?.skipped || (sp?.attempts ?? 0) > 0) && (
                  <button
                    className="small"
                    onClick={() => void simple('reset')}
                    disabled={busy !== null}
                  >
                    Reset step
                  </button>
                )}
              </span>
            </div>
            <div aria-live="polite">
              {result && (
                <div className={`result ${result.kind}`} data-testid="check-result">
                  <strong>
                    {result.kind === 'pass'
                      ? result.latched
                        ? 'Passed earlier'
                        : 'Passed'
                      : 'Not yet'}
                  </strong>
                  {result.message}
                  {result.kind === 'pass' && (
                    <div style={{ marginTop: '0.4rem' }}>
                      <button className="small primary" onClick={() => onSelect(selected + 1)}>
                        {selected + 1 < lab.steps.length ? 'Next step →' : 'Finish →'}
                      </button>
                    </div>
                  )}
                </div>
              )}
              {!result && sp?.passed && (
                <div className="result pass" data-testid="check-result">
                  <strong>Passed</strong>
                  {sp.message}
                </div>
              )}
              {error && <ErrorBox title="The check could not run." error={error} />}
            </div>
            {hints.map((h, i) => (
              <div key={i} className="hint" data-testid="hint">
                <strong>Hint {i + 1}:</strong> <Markdown text={h} />
              </div>
            ))}
            {noMoreHints && <p className="muted">No more hints for this step.</p>}
          </div>
        </section>
      )}
    </>
  );
}

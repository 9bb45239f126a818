'use client';
/**
 * One step at a time: predict-first question, instructions with Run/Copy,
 * an answer field for knowledge checks, Check with its message, hints on
 * demand, skip and reset - and a live mode that checks while you work.
 */
import Link from 'next/link';
import { useEffect, useEffectEvent, useRef, useState } from 'react';
import type {
  CheckResponse,
  HintResponse,
  SkipResponse,
  LabProgress,
  LabView,
  StepProgress,
  StepView,
} from '../../../server/protocol/index';
import { api, describeError } from '../../lib/api';
import { Markdown } from '../../lib/markdown';
import { useStoredJson } from '../../lib/use-stored';
import { ErrorBox, type ErrorInfo } from '../error-box';
import type { SessionClient } from '../../lib/terminal-client';
import { KernelPanels } from './kernel-panels';
import styles from './step-panel.module.css';

type Result = { kind: 'pass' | 'fail'; message: string; latched?: boolean } | null;

/** Moves the focus to the step's heading when a step is shown (for screen readers and keyboards). */
function useFocusOnMount<T extends HTMLElement>() {
  const ref = useRef<T>(null);
  useEffect(() => ref.current?.focus(), []);
  return ref;
}

function Predict({ labId, step }: { labId: string; step: StepView }) {
  const p = step.predict;
  const [state, setState] = useStoredJson<{ guess: string; revealed: boolean }>(
    `underlay.${labId}.${step.id}.predict`,
    { guess: '', revealed: false },
  );
  if (!p) return null;
  return (
    <section className={styles.predict} aria-label="Predict first">
      <div className={styles.label}>Predict first</div>
      <Markdown text={p.question} />
      {p.choices ? (
        <div className={styles.choices} role="group" aria-label="Your prediction">
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
          className={styles.guess}
          aria-label="Your prediction"
          placeholder="Your guess"
          value={state.guess}
          disabled={state.revealed}
          onChange={(e) => setState({ ...state, guess: e.target.value })}
        />
      )}
      {state.revealed ? (
        <div data-testid="predict-answer">
          {p.correct !== undefined && (
            <strong className={state.guess === p.correct ? styles.right : styles.wrong}>
              {state.guess === p.correct ? 'Right.' : `Not quite: it is "${p.correct}".`}{' '}
            </strong>
          )}
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

interface StepProps {
  lab: LabView;
  progress: LabProgress;
  selected: number;
  onSelect: (i: number) => void;
  onProgress: (p: LabProgress) => void;
  canRun: boolean;
  run: (terminal: string, code: string) => void;
  /** A fresh sandbox at the start of a step (the earlier steps done): false if it failed. */
  onRestart: (stepId: string) => Promise<boolean>;
  /** The session's connection, for the step's live kernel-state panels. */
  client: SessionClient | null;
}

export function StepPanel(props: StepProps) {
  const { lab, progress, selected, onSelect } = props;
  const step = lab.steps[selected];
  // Live mode is the panel's, not the step's: it stays on when the student moves on.
  const [live, setLive] = useState(false);
  return (
    <>
      <h1 className={styles.title}>{lab.title}</h1>
      {selected === 0 &&
        !(step && progress.steps[step.id]?.passed) &&
        lab.objectives.length > 0 && (
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
        {/* `steps-nav`, `passed`: the e2e tests count the steps done by them. */}
        <ol className={`${styles.nav} steps-nav`}>
          {lab.steps.map((s, i) => {
            const st = progress.steps[s.id];
            return (
              <li key={s.id}>
                <button
                  className={st?.passed ? 'passed' : st?.skipped ? 'skipped' : undefined}
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
      {step ? (
        // A new step starts with a clean slate: no answer, result, error or busy button.
        <Step key={step.id} {...props} step={step} live={live} onLive={setLive} />
      ) : (
        <WrapUp {...props} />
      )}
    </>
  );
}

function WrapUp({ lab, progress, onSelect }: StepProps) {
  const heading = useFocusOnMount<HTMLHeadingElement>();
  return (
    <section className={styles.step} aria-labelledby="step-title">
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
      {lab.next && (
        <p className={styles.nextLab}>
          Next on the path:{' '}
          <Link href={`/labs/${encodeURIComponent(lab.next.id)}`} data-testid="next-lab">
            {lab.next.title} →
          </Link>
        </p>
      )}
    </section>
  );
}

function Step({
  lab,
  progress,
  selected,
  onSelect,
  onProgress,
  canRun,
  run,
  onRestart,
  client,
  step,
  live,
  onLive,
}: StepProps & { step: StepView; live: boolean; onLive: (on: boolean) => void }) {
  const sp: StepProgress | undefined = progress.steps[step.id];
  const [answer, setAnswer] = useState('');
  const [result, setResult] = useState<Result>(null);
  // What a press produced comes into view: at 1400x860 it lands below the fold.
  const feedback = useRef<HTMLDivElement>(null);
  const lastHint = useRef<HTMLDivElement>(null);
  const choice = useRef<HTMLDivElement>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<ErrorInfo | null>(null);
  const [hints, setHints] = useStoredJson<string[]>(`underlay.${lab.id}.${step.id}.hints`, []);
  const [noMoreHints, setNoMoreHints] = useState(false);
  const [sameHint, setSameHint] = useState(false);
  const [skipping, setSkipping] = useState(false);
  const [restarting, setRestarting] = useState(false);
  const [applied, setApplied] = useState<{ ok: boolean; output: string } | null>(null);
  const heading = useFocusOnMount<HTMLHeadingElement>();

  const base = `/api/labs/${encodeURIComponent(lab.id)}/steps/${encodeURIComponent(step.id)}`;

  const check = async (quiet = false) => {
    if (!quiet) setBusy('check');
    setError(null);
    try {
      const r = await api<CheckResponse>('POST', `${base}/check`, step.input ? { answer } : {});
      onProgress(r.progress);
      if (!quiet || r.passed)
        setResult({ kind: r.passed ? 'pass' : 'fail', message: r.message, latched: r.latched });
      if (r.passed) onLive(false);
    } catch (e) {
      if (!quiet) setError(describeError(e));
    } finally {
      if (!quiet) setBusy(null);
    }
  };

  // Live mode: check every few seconds while the student works (not for typed answers).
  const checkQuietly = useEffectEvent(() => void check(true));
  const checking = live && !step.input && !sp?.passed;
  useEffect(() => {
    if (!checking) return;
    const t = setInterval(() => checkQuietly(), 4000);
    return () => clearInterval(t);
  }, [checking]);

  const hint = async () => {
    setBusy('hint');
    setError(null);
    try {
      const r = await api<HintResponse>('POST', `${base}/hint`);
      onProgress(r.progress);
      // State hints are computed again on every press: the same words mean the same mistake.
      setSameHint(!!r.hint && r.hint === hints.at(-1));
      if (r.hint && r.hint !== hints.at(-1)) setHints([...hints, r.hint]);
      setNoMoreHints(!r.hint);
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(null);
    }
  };

  useEffect(() => {
    if (result || applied)
      feedback.current?.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }, [result, applied]);
  useEffect(() => {
    if (hints.length) lastHint.current?.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }, [hints.length, sameHint]);
  useEffect(() => {
    if (skipping || restarting)
      choice.current?.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }, [skipping, restarting]);

  const simple = async (action: 'skip' | 'reset', apply = false) => {
    setBusy(action);
    setSkipping(false);
    try {
      const p = await api<SkipResponse>(
        'POST',
        `${base}/${action}`,
        action === 'skip' && apply ? { apply: true } : undefined,
      );
      onProgress(p);
      setResult(null);
      setApplied(p.applied ?? null);
      if (action === 'reset') setHints([]);
      // After a failed apply the student stays here to read why.
      if (action === 'skip' && (!p.applied || p.applied.ok))
        onSelect(Math.min(selected + 1, lab.steps.length));
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(null);
    }
  };

  return (
    <section className={styles.step} aria-labelledby="step-title" data-step={step.id}>
      <h2 id="step-title" tabIndex={-1} ref={heading}>
        {selected + 1}. {step.title}
        {sp?.passed && <span className={styles.done}> ✓</span>}
      </h2>
      <Predict labId={lab.id} step={step} />
      <Markdown
        text={step.instructions}
        target={{ defaultTerminal: lab.terminals[0] ?? 'T1', ...(canRun ? { run } : {}) }}
      />
      <KernelPanels client={client} step={step} />
      <div className={styles.checkBox}>
        {step.input && (
          <label className={styles.answer}>
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
        <div className={styles.checkRow}>
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
            <label className={`muted ${styles.live}`}>
              <input
                type="checkbox"
                checked={live}
                disabled={!canRun || sp?.passed}
                onChange={(e) => onLive(e.target.checked)}
              />{' '}
              Check as I work
            </label>
          )}
          <span className={styles.stepActions}>
            {!sp?.passed && !sp?.skipped && (
              <button
                className="small"
                aria-expanded={skipping}
                onClick={() => setSkipping(!skipping)}
                disabled={busy !== null}
              >
                Skip
              </button>
            )}
            <button
              className="small"
              aria-expanded={restarting}
              onClick={() => {
                setRestarting(!restarting);
                setSkipping(false);
              }}
              disabled={busy !== null}
            >
              Start step over
            </button>
          </span>
        </div>
        {restarting && (
          <div className={`result info ${styles.skip}`} data-testid="restart-choice" ref={choice}>
            <strong>A fresh sandbox at the start of this step</strong>
            <p>
              {selected === 0
                ? "Only the lab's setup is done, "
                : `The lab's setup and the ${selected === 1 ? 'step' : `${selected} steps`} before this one are done for you, `}
              their commands typed into your terminals (the screens are cleared after). Your files
              in <code>/lab</code> and every program and mount from before are gone; this step and
              the ones after it start over.
            </p>
            <button
              className="small"
              onClick={() => {
                setRestarting(false);
                setBusy('restart');
                setError(null);
                void onRestart(step.id).then((ok) => {
                  setBusy(null);
                  if (!ok) return;
                  setResult(null);
                  setApplied(null);
                  setHints([]);
                });
              }}
              disabled={busy !== null}
            >
              Fresh sandbox at this step
            </button>{' '}
            {(sp?.passed || sp?.skipped || (sp?.attempts ?? 0) > 0) && (
              <>
                <button
                  className="small"
                  onClick={() => {
                    setRestarting(false);
                    void simple('reset');
                  }}
                  disabled={busy !== null}
                >
                  Keep my sandbox, only clear this step&apos;s result
                </button>{' '}
              </>
            )}
            <button className="small" onClick={() => setRestarting(false)}>
              Cancel
            </button>
          </div>
        )}
        {busy === 'restart' && (
          <p className="muted" aria-live="polite" data-testid="restarting">
            Preparing a fresh sandbox at this step…
          </p>
        )}
        {skipping && (
          <div className={`result info ${styles.skip}`} data-testid="skip-choice" ref={choice}>
            <p>
              Skipping counts this step as skipped, not passed. Later steps may need what it makes
              in your sandbox:
            </p>
            <button
              className="small"
              onClick={() => void simple('skip', true)}
              disabled={!canRun || busy !== null}
            >
              Skip and do it for me
            </button>{' '}
            <button className="small" onClick={() => void simple('skip')} disabled={busy !== null}>
              Skip, leave my sandbox as it is
            </button>{' '}
            <button className="small" onClick={() => setSkipping(false)}>
              Cancel
            </button>
          </div>
        )}
        <div aria-live="polite" ref={feedback}>
          {applied && !applied.ok && (
            <div className="result fail" data-testid="skip-applied">
              <strong>Skipped, but the step&apos;s solution did not run cleanly.</strong> It was
              written to follow the earlier steps&apos; own solutions; your sandbox may differ.
              <pre>{applied.output}</pre>
            </div>
          )}
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
                <div className={styles.next}>
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
          <div
            key={i}
            className={styles.hint}
            data-testid="hint"
            ref={i === hints.length - 1 ? lastHint : undefined}
          >
            <strong>Hint {i + 1}:</strong> <Markdown text={h} />
          </div>
        ))}
        {sameHint && (
          <p className="muted" data-testid="same-hint">
            Still true: Hint {hints.length} above is what your sandbox shows now.
          </p>
        )}
        {noMoreHints && (
          <p className="muted" data-testid="no-more-hints">
            Nothing more to say now: every written hint is shown, and your sandbox shows none of the
            mistakes the hints look for. Try something, then press Hint again.
          </p>
        )}
      </div>
    </section>
  );
}

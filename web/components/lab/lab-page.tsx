'use client';
/**
 * The lab view: the guided steps beside the lab's terminals. The student's
 * sandbox starts (or resumes) on load; a reload re-attaches to the same
 * shells and replays them, a server restart re-adopts the sandbox (or makes
 * a new one) and says so. Progress comes from the server's engine.
 */
import Link from 'next/link';
import { useCallback, useEffect, useRef, useState } from 'react';
import type { LabProgress, LabView } from '../../../server/protocol/index';
import { ApiFailure, apiOnce, describeError } from '../../lib/api';
import { ErrorBox, type ErrorInfo } from '../error-box';
import { SiteHeader } from '../site-header';
import { TerminalPlaceholder } from '../terminal/terminal-tabs';
import styles from './lab-page.module.css';
import { ClassNoticeBanner, WatchedBadge } from './class-banner';
import { LabTerminals } from './lab-terminals';
import { Split } from './split';
import { StepPanel } from './step-panel';
import { useLabSession } from './use-lab-session';

// Fetch the terminal code now, in parallel with the lab and the sandbox.
if (typeof window !== 'undefined') void import('../terminal/xterm-view');

export function LabPage({ id }: { id: string }) {
  const [view, setView] = useState<LabView | null>(null);
  const [missing, setMissing] = useState(false);
  const [loadError, setLoadError] = useState<ErrorInfo | null>(null);
  const [attempt, setAttempt] = useState(0);
  const [progress, setProgress] = useState<LabProgress | null>(null);
  const [selected, setSelected] = useState(0);
  const [activeTerm, setActiveTerm] = useState('T1');
  const lab = useLabSession(id);
  const { session } = lab;

  useEffect(() => {
    let current = true;
    apiOnce<LabView>('GET', `/api/labs/${encodeURIComponent(id)}`).then(
      (v) => {
        if (!current) return;
        setView(v);
        setProgress(v.progress);
        setSelected(Math.min(v.progress.current, v.steps.length));
        setActiveTerm(v.terminals[0] ?? 'T1');
      },
      (e) => {
        if (!current) return;
        if (e instanceof ApiFailure && e.status === 404) setMissing(true);
        else setLoadError(describeError(e));
      },
    );
    return () => {
      current = false;
    };
  }, [id, attempt]);

  // A sandbox replaced from elsewhere (an instructor moved the student to a
  // step, another tab reset the lab) comes with new progress: fetch it.
  const sessionId = session?.session;
  const seen = useRef<string | undefined>(undefined);
  useEffect(() => {
    if (!sessionId) return;
    const before = seen.current;
    seen.current = sessionId;
    if (!before || before === sessionId) return;
    let current = true;
    apiOnce<LabView>('GET', `/api/labs/${encodeURIComponent(id)}`).then(
      (v) => {
        if (current) setProgress(v.progress);
      },
      () => {},
    );
    return () => {
      current = false;
    };
  }, [id, sessionId]);

  const typeInto = lab.run;
  const run = useCallback(
    (terminal: string, code: string) => {
      setActiveTerm(terminal);
      typeInto(terminal, code);
    },
    [typeInto],
  );

  const resetLab = async () => {
    if (!confirm('Reset the lab? Your progress is forgotten and you get a fresh sandbox.')) return;
    const p = await lab.reset();
    if (p) {
      setProgress(p);
      setSelected(0);
    }
  };

  if (missing)
    return (
      <>
        <SiteHeader />
        <main id="main" className="error-page">
          <h1>No such lab</h1>
          <p>
            There is no lab called <code>{id}</code>. <Link href="/">See all labs</Link>
          </p>
        </main>
      </>
    );
  if (loadError)
    return (
      <>
        <SiteHeader />
        <main id="main" className="error-page">
          <ErrorBox title="Could not load the lab." error={loadError} />
          <p>
            <button
              onClick={() => {
                setLoadError(null);
                setAttempt((a) => a + 1);
              }}
            >
              Try again
            </button>{' '}
            <Link href="/">Back to the labs</Link>
          </p>
        </main>
      </>
    );
  if (!view || !progress)
    return (
      <>
        <SiteHeader />
        <main className="loading-page muted" aria-busy="true">
          Loading the lab…
        </main>
      </>
    );

  // A skip is not a pass: the count says what the student did.
  const done = Object.values(progress.steps).filter((s) => s.passed).length;
  const skipped = Object.values(progress.steps).filter((s) => s.skipped && !s.passed).length;
  return (
    <div className={styles.shell}>
      <SiteHeader>
        <WatchedBadge client={lab.connection.client} />
        <span
          className="muted"
          data-testid="cgroup-version"
          title={`This sandbox has cgroup ${view.cgroup === 'v1' ? 'v1 (hierarchies under /sys/fs/cgroup/cpu, memory, ...)' : 'v2 (one hierarchy at /sys/fs/cgroup)'}, like the server's host.`}
        >
          cgroup {view.cgroup}
        </span>
        <span className="muted" aria-label="progress">
          {done}/{view.steps.length} steps{skipped ? ` (${skipped} skipped)` : ''}
        </span>
        <button onClick={() => void resetLab()} disabled={!view.available}>
          Reset lab
        </button>
        <button onClick={() => void lab.end()} disabled={!session}>
          End session
        </button>
      </SiteHeader>
      <ClassNoticeBanner client={lab.connection.client} />
      {lab.notice && (
        <p className="notice" role="status">
          {lab.notice}{' '}
          <button className="link" onClick={lab.dismissNotice}>
            Dismiss
          </button>
        </p>
      )}
      <Split storageKey="underlay.split">
        {/* `lab-guide`: the e2e tests read the instructions through it. */}
        <main id="main" className={`${styles.guide} lab-guide`} aria-label="Lab instructions">
          {!view.available && (
            <div className="result info" role="status">
              <strong>This lab cannot run on this server.</strong>
              {view.reason}
            </div>
          )}
          <StepPanel
            lab={view}
            progress={progress}
            selected={selected}
            onSelect={setSelected}
            onProgress={setProgress}
            canRun={!!session}
            run={run}
            client={lab.connection.client}
            onRestart={async (stepId) => {
              const p = await lab.restartStep(stepId);
              if (p) setProgress(p);
              return !!p;
            }}
          />
        </main>
        <section
          className={styles.terms}
          aria-label="Terminals"
          data-testid="lab-terminals"
          data-session={session?.session}
        >
          {session ? (
            <LabTerminals
              key={`${session.session}:${session.terminals.map((t) => t.term).join(',')}`}
              session={session}
              connection={lab.connection}
              active={activeTerm}
              onActive={setActiveTerm}
              onLost={lab.start}
            />
          ) : (
            <TerminalPlaceholder>
              {lab.error ? (
                <div>
                  <ErrorBox title="Could not start your sandbox." error={lab.error} />
                  <p>
                    <button className="primary" onClick={lab.start}>
                      Try again
                    </button>
                  </p>
                </div>
              ) : lab.waiting ? (
                <div role="status" aria-live="polite" data-testid="waiting">
                  <p>
                    <strong>{lab.waiting.message}</strong>
                  </p>
                  <p className="muted">
                    Your lab starts as soon as a place frees up. Keep this page open: leaving it
                    gives up your place.
                  </p>
                </div>
              ) : lab.ended ? (
                <div>
                  <p>Session ended. Your progress is kept.</p>
                  <button className="primary" onClick={lab.start}>
                    Start a new sandbox
                  </button>
                </div>
              ) : view.available ? (
                <p aria-busy="true">Starting your sandbox…</p>
              ) : (
                <p>Not available on this server.</p>
              )}
            </TerminalPlaceholder>
          )}
        </section>
      </Split>
    </div>
  );
}

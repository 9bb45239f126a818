'use client';
/**
 * The lab view: the guided steps beside the lab's terminals. The student's
 * sandbox starts (or resumes) on load; a reload re-attaches to the same
 * shells and replays them, a server restart re-adopts the sandbox (or makes
 * a new one) and says so. Progress comes from the server's engine.
 */
import Link from 'next/link';
import { useCallback, useEffect, useRef, useState } from 'react';
import type { LabProgress, LabSession, LabView } from '../../../server/protocol/index';
import { ApiFailure, api, apiOnce, describeError } from '../../lib/api';
import type { RemoteTerminal } from '../../lib/terminal-client';
import { SiteHeader } from '../site-header';
import { LabTerminals } from './lab-terminals';
import { Split } from './split';

// Fetch the terminal code now, in parallel with the lab and the sandbox.
if (typeof window !== 'undefined') void import('../terminal/xterm-view');
import { StepPanel } from './step-panel';

export interface ErrorInfo {
  message: string;
  step?: string;
  hint?: string;
}

export function ErrorBox({ title, error }: { title: string; error: ErrorInfo }) {
  return (
    <div role="alert" className="result fail">
      <strong>{title}</strong>
      {error.message}
      {error.step && <span className="muted"> (failed step: {error.step})</span>}
      {error.hint && <div>Hint: {error.hint}</div>}
    </div>
  );
}

export function LabPage({ id }: { id: string }) {
  const [view, setView] = useState<LabView | null>(null);
  const [missing, setMissing] = useState(false);
  const [loadError, setLoadError] = useState<ErrorInfo | null>(null);
  const [progress, setProgress] = useState<LabProgress | null>(null);
  const [selected, setSelected] = useState(0);
  const [session, setSession] = useState<LabSession | null>(null);
  const [sessionError, setSessionError] = useState<ErrorInfo | null>(null);
  const [ended, setEnded] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [activeTerm, setActiveTerm] = useState('T1');
  const terms = useRef(new Map<string, RemoteTerminal>());
  const starting = useRef(false);

  const loadView = useCallback(() => {
    setLoadError(null);
    apiOnce<LabView>('GET', `/api/labs/${encodeURIComponent(id)}`).then(
      (v) => {
        setView(v);
        setProgress(v.progress);
        setSelected(Math.min(v.progress.current, v.steps.length));
        setActiveTerm(v.terminals[0] ?? 'T1');
      },
      (e) => {
        if (e instanceof ApiFailure && e.status === 404) setMissing(true);
        else setLoadError(describeError(e));
      },
    );
  }, [id]);
  useEffect(loadView, [loadView]);

  /** Starts or resumes the sandbox; called on load, after a restart, and after a reset. */
  const startSession = useCallback(async () => {
    if (starting.current) return;
    starting.current = true;
    setSessionError(null);
    try {
      const s = await apiOnce<LabSession>('POST', `/api/labs/${encodeURIComponent(id)}/session`);
      terms.current.clear();
      setSession((old) =>
        old &&
        old.session === s.session &&
        JSON.stringify(old.terminals) === JSON.stringify(s.terminals)
          ? old
          : s,
      );
      setEnded(false);
      if (s.notice) setNotice(s.notice);
    } catch (e) {
      // A lab this host cannot run, or no such lab: the lab view says so already.
      if (!(e instanceof ApiFailure && (e.status === 404 || e.status === 409)))
        setSessionError(describeError(e));
    } finally {
      starting.current = false;
    }
  }, [id]);

  // The sandbox starts while the lab text loads, not after it: the server
  // refuses labs this host cannot run, so nothing is started in vain.
  useEffect(() => {
    void startSession();
  }, [startSession]);

  const run = useCallback((terminal: string, code: string) => {
    setActiveTerm(terminal);
    // The terminal may still be attaching (hidden ones mount after the first): wait for it.
    const deadline = Date.now() + 10_000;
    const type = () => {
      const t = terms.current.get(terminal);
      // One line at a time, as if typed; the shell runs each on its Enter.
      if (t) void t.input(code.replace(/\n/g, '\r') + '\r');
      else if (Date.now() < deadline) setTimeout(type, 100);
    };
    type();
  }, []);

  const endSession = async () => {
    await api('DELETE', `/api/labs/${encodeURIComponent(id)}/session`).catch(() => {});
    setEnded(true);
    setSession(null);
  };

  const resetLab = async () => {
    if (!confirm('Reset the lab? Your progress is forgotten and you get a fresh sandbox.')) return;
    try {
      const r = await api<{ progress: LabProgress; session: LabSession }>(
        'POST',
        `/api/labs/${encodeURIComponent(id)}/reset`,
      );
      terms.current.clear();
      setProgress(r.progress);
      setSelected(0);
      setSession(r.session);
      setNotice('The lab was reset: a fresh sandbox, and no steps done.');
      for (const k of Object.keys(localStorage))
        if (k.startsWith(`underlay.${id}.`)) localStorage.removeItem(k);
    } catch (e) {
      setSessionError(describeError(e));
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
            <button onClick={loadView}>Try again</button> <Link href="/">Back to the labs</Link>
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

  const done = Object.values(progress.steps).filter((s) => s.passed || s.skipped).length;
  return (
    <div className="lab-shell">
      <SiteHeader>
        <span className="muted" aria-label="progress">
          {done}/{view.steps.length} steps
        </span>
        <button onClick={() => void resetLab()} disabled={!view.available}>
          Reset lab
        </button>
        <button onClick={() => void endSession()} disabled={!session}>
          End session
        </button>
      </SiteHeader>
      {notice && (
        <p className="notice" role="status">
          {notice}{' '}
          <button className="link" onClick={() => setNotice(null)}>
            Dismiss
          </button>
        </p>
      )}
      <Split storageKey="underlay.split">
        <main id="main" className="lab-guide" aria-label="Lab instructions">
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
          />
        </main>
        <section className="lab-terms" aria-label="Terminals">
          {session ? (
            <LabTerminals
              key={`${session.session}:${session.terminals.map((t) => t.term).join(',')}`}
              session={session}
              active={activeTerm}
              onActive={setActiveTerm}
              registry={terms.current}
              onLost={() => void startSession()}
            />
          ) : (
            <div className="term-area">
              <div className="overlay">
                {sessionError ? (
                  <div>
                    <ErrorBox title="Could not start your sandbox." error={sessionError} />
                    <p>
                      <button className="primary" onClick={() => void startSession()}>
                        Try again
                      </button>
                    </p>
                  </div>
                ) : ended ? (
                  <div>
                    <p>Session ended. Your progress is kept.</p>
                    <button className="primary" onClick={() => void startSession()}>
                      Start a new sandbox
                    </button>
                  </div>
                ) : view.available ? (
                  <p aria-busy="true">Starting your sandbox…</p>
                ) : (
                  <p>Not available on this server.</p>
                )}
              </div>
            </div>
          )}
        </section>
      </Split>
    </div>
  );
}

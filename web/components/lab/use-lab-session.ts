/**
 * The student's sandbox for one lab: started (or resumed) on load, again
 * after the connection came back from a drop (the server may have restarted
 * with new shells) and on request; ended and reset; its terminal connection;
 * and Run, which types into a terminal as soon as that terminal is open.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { LabProgress, LabSession } from '../../../server/protocol/index';
import { ApiFailure, api, apiOnce, describeError } from '../../lib/api';
import { useSessionClient, type SessionConnection } from '../../lib/use-session-client';
import { preconnect } from '../../lib/terminal-client';
import { removeStored } from '../../lib/use-stored';
import type { ErrorInfo } from '../error-box';

export interface LabSessionState {
  /** Null until started, after it ended, or when this host cannot run the lab. */
  session: LabSession | null;
  connection: SessionConnection;
  /** Why the sandbox could not be started (or reset). */
  error: ErrorInfo | null;
  /** The student ended the session. */
  ended: boolean;
  /** The host is full and the student waits in line (asked again automatically). */
  waiting: { position: number; message: string } | null;
  /** What the server or a reset wants the student to know (a restart, a fresh sandbox). */
  notice: string | null;
  dismissNotice(): void;
  /** Starts or resumes the sandbox. */
  start(): void;
  end(): Promise<void>;
  /** A fresh sandbox and no progress: the new progress, or null if it failed (see `error`). */
  reset(): Promise<LabProgress | null>;
  /** A fresh sandbox at the start of a step, the earlier steps done: the new progress, or null. */
  restartStep(stepId: string): Promise<LabProgress | null>;
  /** Types `code` into terminal `name` once it is open (it may still be attaching). */
  run(name: string, code: string): void;
}

export function useLabSession(id: string): LabSessionState {
  const [session, setSession] = useState<LabSession | null>(null);
  const [error, setError] = useState<ErrorInfo | null>(null);
  const [ended, setEnded] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [waiting, setWaiting] = useState<{ position: number; message: string } | null>(null);
  const starting = useRef(false);
  const retry = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const [poll, setPoll] = useState(0);
  const base = `/api/labs/${encodeURIComponent(id)}`;

  const resume = useCallback(() => {
    if (starting.current) return;
    starting.current = true;
    clearTimeout(retry.current);
    void apiOnce<LabSession>('POST', `${base}/session`)
      .then(
        (s) => {
          // Open its socket now, while React renders what follows (the page
          // takes it; nothing new if the page already holds this session's).
          preconnect(window.location.origin, s);
          setError(null);
          setWaiting(null);
          // The same sandbox with the same shells (after a reconnect): the terminals stay as they are.
          setSession((old) =>
            old &&
            old.session === s.session &&
            JSON.stringify(old.terminals) === JSON.stringify(s.terminals)
              ? old
              : s,
          );
          setEnded(false);
          if (s.notice) setNotice(s.notice);
        },
        (e: unknown) => {
          // The host is full: keep our place in line by asking again when told to.
          if (e instanceof ApiFailure && e.body.queue) {
            setWaiting({ position: e.body.queue.position, message: e.body.error });
            retry.current = setTimeout(
              () => setPoll((n) => n + 1),
              Math.max(1000, e.body.retryAfterMs ?? 3000),
            );
            return;
          }
          setWaiting(null);
          // A lab this host cannot run, or no such lab: the lab view says so already.
          if (!(e instanceof ApiFailure && (e.status === 404 || e.status === 409)))
            setError(describeError(e));
        },
      )
      .finally(() => {
        starting.current = false;
      });
  }, [base]);
  // Waiting in line: ask again when the server said to (each answer sets the next poll).
  useEffect(() => {
    if (poll > 0) resume();
  }, [poll, resume]);
  useEffect(() => () => clearTimeout(retry.current), []);

  // The student's own End: the socket's "ended" is expected, not a cue to start again
  // (which raced the teardown: "the disk is in use by another sandbox").
  const endedByStudent = useRef(false);
  const start = useCallback(() => {
    endedByStudent.current = false;
    setError(null);
    resume();
  }, [resume]);

  // The sandbox starts while the lab text loads, not after it: the server
  // refuses labs this host cannot run, so nothing is started in vain.
  useEffect(() => {
    resume();
  }, [resume]);

  const onLost = useCallback(() => {
    if (!endedByStudent.current) start();
  }, [start]);
  const connection = useSessionClient(session?.session, session?.token, onLost);
  const { client } = connection;

  const run = useCallback(
    (name: string, code: string) => {
      const term = session?.terminals.find((t) => t.name === name)?.term;
      if (!client || !term) return;
      // One line at a time, as if typed; the shell runs each on its Enter.
      void client.whenOpen(term).then((t) => t.input(code.replace(/\n/g, '\r') + '\r'));
    },
    [client, session],
  );

  const end = async () => {
    endedByStudent.current = true;
    await api('DELETE', `${base}/session`).catch(() => {});
    setEnded(true);
    setSession(null);
  };

  const reset = async () => {
    try {
      const r = await api<{ progress: LabProgress; session: LabSession }>('POST', `${base}/reset`);
      setSession(r.session);
      setNotice('The lab was reset: a fresh sandbox, and no steps done.');
      removeStored(`underlay.${id}.`);
      return r.progress;
    } catch (e) {
      setError(describeError(e));
      return null;
    }
  };

  const restartStep = async (stepId: string) => {
    try {
      const r = await api<{ progress: LabProgress; session: LabSession }>(
        'POST',
        `${base}/steps/${encodeURIComponent(stepId)}/restart`,
      );
      setError(null);
      setSession(r.session);
      setNotice(r.session.notice ?? 'A fresh sandbox at the start of this step.');
      return r.progress;
    } catch (e) {
      setError(describeError(e));
      return null;
    }
  };

  return {
    session,
    connection,
    error,
    ended,
    waiting,
    notice,
    dismissNotice: () => setNotice(null),
    start,
    end,
    reset,
    restartStep,
    run,
  };
}

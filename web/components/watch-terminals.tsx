'use client';
/**
 * An instructor's live, read-only view of one student's terminals in one
 * lab (docs/classroom.md#watching): its own socket, authorised with the
 * instructor token, attached to each terminal as one more viewer. Nothing
 * typed here reaches the shell (the server refuses it too), and the view
 * takes the student's terminal size instead of imposing its own.
 */
import dynamic from 'next/dynamic';
import { useEffect, useMemo, useState } from 'react';
import type { InstructorStudent } from '../../server/protocol/index';
import { SessionClient, type ConnectionState } from '../lib/terminal-client';
import styles from './roster.module.css';

const XtermView = dynamic(() => import('./terminal/xterm-view'), {
  ssr: false,
  loading: () => <div className={styles.meta}>Loading terminal…</div>,
});

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: 'Live, read-only',
  reconnecting: 'Connection lost - reconnecting…',
  ended: 'Ended',
};

export function WatchTerminals({
  cohort,
  token,
  studentKey,
  live,
}: {
  cohort: string;
  token: string;
  studentKey: string;
  live: InstructorStudent['live'][number];
}) {
  const client = useMemo(
    () =>
      new SessionClient(window.location.origin, {
        watch: { cohort, token, student: studentKey, lab: live.lab },
      }),
    [cohort, token, studentKey, live.lab],
  );
  const [state, setState] = useState<{ s: ConnectionState; detail?: string }>({
    s: 'connecting',
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  // One terminal at a time, in tabs as the student has them (a lab terminal is ~30 rows tall).
  const [shown, setShown] = useState<string | undefined>();
  const active = live.terminals.find((t) => t.term === shown)?.term ?? live.terminals[0]?.term;
  useEffect(() => {
    client.connect();
    const off = client.onState((s, detail) => setState({ s, ...(detail ? { detail } : {}) }));
    return () => {
      off();
      client.close();
    };
  }, [client]);

  return (
    <div className={styles.watch} data-testid="watch" data-lab={live.lab} data-state={state.s}>
      <p className={styles.meta} role="status">
        {STATE_TEXT[state.s]}
        {state.detail && state.s !== 'connected' ? `: ${state.detail}` : ''}
      </p>
      <div role="tablist" aria-label="The student's terminals" className={styles.watchTabs}>
        {live.terminals.map((t) => (
          <button
            key={t.term}
            type="button"
            role="tab"
            aria-selected={t.term === active}
            className="small"
            onClick={() => setShown(t.term)}
          >
            {t.name}
          </button>
        ))}
      </div>
      {live.terminals.map((t) => (
        <figure
          key={t.term}
          className={styles.watchTerm}
          data-term={t.name}
          role="tabpanel"
          hidden={t.term !== active}
        >
          {t.exited !== undefined && (
            <figcaption className={styles.meta}>
              {t.name}: the shell exited with status {t.exited}
            </figcaption>
          )}
          {errors[t.term] ? (
            <p role="alert">{errors[t.term]}</p>
          ) : (
            <XtermView
              client={client}
              termId={t.term}
              active={false}
              readOnly
              onOpened={() => undefined}
              onError={(message) => setErrors((e) => ({ ...e, [t.term]: message }))}
            />
          )}
        </figure>
      ))}
    </div>
  );
}

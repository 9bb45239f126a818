'use client';
/**
 * The lab's named terminals (T1, T2, ...) in tabs, attached to the session's
 * existing shells from offset 0, so a reload shows everything again.
 */
import dynamic from 'next/dynamic';
import { useEffect, useMemo, useRef, useState } from 'react';
import type { LabSession } from '../../../server/protocol/index';
import {
  SessionClient,
  type ConnectionState,
  type RemoteTerminal,
} from '../../lib/terminal-client';

const XtermView = dynamic(() => import('../terminal/xterm-view'), {
  ssr: false,
  loading: () => <div className="muted" style={{ padding: '1rem' }} />,
});

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost - reconnecting…',
  ended: 'Session ended',
};

export function LabTerminals({
  session,
  active,
  onActive,
  registry,
  onLost,
}: {
  session: LabSession;
  active: string;
  onActive: (name: string) => void;
  registry: Map<string, RemoteTerminal>;
  /** The session or a shell is gone (server restart, exit): ask for the session again. */
  onLost: () => void;
}) {
  const client = useMemo(
    () => new SessionClient(window.location.origin, session.session, session.token),
    [session.session, session.token],
  );
  const [state, setState] = useState<ConnectionState>('connecting');
  const [detail, setDetail] = useState<string | undefined>();
  const [exited, setExited] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const wasLost = useRef(false);
  // The visible terminal first; the others once it is up (each xterm costs a render).
  const [mounted, setMounted] = useState<string[]>([active]);
  useEffect(() => {
    if (!mounted.includes(active)) setMounted((m) => [...m, active]);
  }, [active]);

  useEffect(() => {
    const off = client.onState((s, d) => {
      setState(s);
      setDetail(d);
      if (s === 'reconnecting') wasLost.current = true;
      // Back after a drop: the server may have restarted with new shells.
      if (s === 'connected' && wasLost.current) {
        wasLost.current = false;
        onLost();
      }
      if (s === 'ended') onLost();
    });
    client.onError = (e) => setError(e.message);
    return () => {
      off();
      client.close();
    };
  }, [client]);

  const badge =
    state === 'connected' ? 'var(--ok)' : state === 'ended' ? 'var(--bad)' : 'var(--warn)';
  return (
    <>
      <div className="term-bar">
        <div role="tablist" aria-label="Terminals" style={{ display: 'flex', gap: '0.3rem' }}>
          {session.terminals.map((t) => (
            <button
              key={t.term}
              role="tab"
              aria-selected={t.name === active}
              aria-controls={`term-${t.name}`}
              onClick={() => onActive(t.name)}
            >
              {t.name}
              {exited.includes(t.name) ? ' (exited)' : ''}
            </button>
          ))}
        </div>
        {exited.length > 0 && (
          <button className="small" onClick={onLost}>
            New shell for {exited.join(', ')}
          </button>
        )}
        <span className="status" role="status" data-testid="conn-state">
          <span className="dot" aria-hidden style={{ background: badge }} />
          {STATE_TEXT[state]}
          {state === 'reconnecting' && detail ? ` (${detail})` : ''}
        </span>
      </div>
      {error && (
        <p role="alert" className="notice">
          {error}
        </p>
      )}
      <div className="term-area">
        {session.terminals.map((t) => (
          <div
            key={t.term}
            id={`term-${t.name}`}
            role="tabpanel"
            aria-label={t.name}
            style={{
              position: 'absolute',
              inset: 0,
              display: t.name === active ? 'block' : 'none',
            }}
            data-terminal-name={t.name}
          >
            {mounted.includes(t.name) && (
              <XtermView
                client={client}
                termId={t.term}
                name={t.name}
                active={t.name === active}
                onOpened={(rt) => {
                  registry.set(t.name, rt);
                  setTimeout(() => setMounted(session.terminals.map((x) => x.name)), 50);
                }}
                onError={(m) => setError(`Terminal ${t.name}: ${m}`)}
                onExit={() => setExited((x) => [...new Set([...x, t.name])])}
              />
            )}
          </div>
        ))}
        {state === 'reconnecting' && (
          <div className="overlay" role="status">
            <p>
              Connection to the server lost - reconnecting…
              <br />
              <span style={{ opacity: 0.8 }}>Your sandbox keeps running; nothing is lost.</span>
            </p>
          </div>
        )}
      </div>
    </>
  );
}

'use client';
/**
 * A minimal page body: start a sandbox, then terminals into it in tabs.
 * The session (id + token) and the open terminal ids live in sessionStorage,
 * so a reload re-attaches to the same shells and replays their output.
 */
import dynamic from 'next/dynamic';
import { useCallback, useEffect, useMemo, useState } from 'react';
import type { SessionCreated } from '../../../server/protocol/index';
import {
  SessionClient,
  type ConnectionState,
  type RemoteTerminal,
} from '../../lib/terminal-client';

const XtermView = dynamic(() => import('./xterm-view'), {
  ssr: false,
  loading: () => <div style={{ color: '#9198a1', padding: '1rem' }}>Loading terminal…</div>,
});

const KEY = 'underlay.session';
interface Saved extends SessionCreated {
  terms: string[];
}

function load(): Saved | null {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) ?? 'null') as Saved | null;
  } catch {
    return null;
  }
}

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost - reconnecting…',
  ended: 'Session ended',
};

export function SandboxShell() {
  const [saved, setSaved] = useState<Saved | null>(null);
  const [starting, setStarting] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [hydrated, setHydrated] = useState(false);

  useEffect(() => {
    setSaved(load());
    setHydrated(true);
  }, []);

  const persist = useCallback((s: Saved | null) => {
    setSaved(s);
    if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
    else sessionStorage.removeItem(KEY);
  }, []);

  const start = async () => {
    setStarting(true);
    setError(null);
    try {
      const r = await fetch('/api/sessions', { method: 'POST' });
      const body = (await r.json()) as SessionCreated & { error?: string; hint?: string };
      if (!r.ok) throw new Error(body.hint ? `${body.error} - ${body.hint}` : body.error);
      persist({ ...body, terms: [] });
    } catch (err) {
      setError(`Could not start a sandbox: ${(err as Error).message}`);
    } finally {
      setStarting(false);
    }
  };

  if (!hydrated) return <div style={{ minHeight: '60vh' }} />;
  if (!saved) {
    return (
      <section style={{ padding: '2rem 1.2rem', maxWidth: '46rem' }}>
        <p>
          Start a sandbox: a fresh Linux system where you are root - in a user namespace, with its
          own hostname, processes, network and cgroups - on this server&apos;s real kernel.
        </p>
        <button className="primary" onClick={() => void start()} disabled={starting}>
          {starting ? 'Starting…' : 'Start a sandbox'}
        </button>
        {error && (
          <p role="alert" style={{ color: 'var(--bad)' }}>
            {error}
          </p>
        )}
      </section>
    );
  }
  return <Terminals saved={saved} persist={persist} />;
}

function Terminals({ saved, persist }: { saved: Saved; persist: (s: Saved | null) => void }) {
  const client = useMemo(
    () => new SessionClient(window.location.origin, saved.session, saved.token),
    [saved.session, saved.token],
  );
  const [state, setState] = useState<ConnectionState>('connecting');
  const [detail, setDetail] = useState<string | undefined>();
  // One tab per terminal: `key` is stable, `id` arrives once the server opened it.
  const [tabs, setTabs] = useState<{ key: string; id?: string; name: string }[]>(() =>
    saved.terms.length
      ? saved.terms.map((id, i) => ({ key: id, id, name: `T${i + 1}` }))
      : [{ key: 'new-1', name: 'T1' }],
  );
  const [active, setActive] = useState(0);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    const off = client.onState((s, d) => {
      setState(s);
      setDetail(d);
    });
    client.onError = (e) => setNotice(e.message);
    return () => {
      off();
      client.close();
    };
  }, [client]);

  useEffect(() => {
    const ids = tabs.map((t) => t.id).filter((x): x is string => !!x);
    persist({ ...saved, terms: ids });
  }, [tabs]);

  const opened = (key: string) => (t: RemoteTerminal) =>
    setTabs((ts) => ts.map((x) => (x.key === key ? { ...x, id: t.id, name: t.name } : x)));

  const end = async () => {
    await fetch(`/api/sessions/${saved.session}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${saved.token}` },
    }).catch(() => {});
    client.close();
    persist(null);
  };

  const badge =
    state === 'connected' ? 'var(--ok)' : state === 'ended' ? 'var(--bad)' : 'var(--warn)';
  return (
    <section style={{ flex: 1, display: 'flex', flexDirection: 'column', minHeight: 0 }}>
      <div
        style={{ display: 'flex', alignItems: 'center', gap: '0.5rem', padding: '0.5rem 1.2rem' }}
      >
        <div role="tablist" aria-label="Terminals" style={{ display: 'flex', gap: '0.3rem' }}>
          {tabs.map((t, i) => (
            <button
              key={t.key}
              role="tab"
              aria-selected={i === active}
              onClick={() => setActive(i)}
              style={{
                fontWeight: i === active ? 600 : 400,
                borderColor: i === active ? 'var(--accent)' : 'var(--border)',
              }}
            >
              {t.name}
            </button>
          ))}
          <button
            aria-label="Open another terminal"
            onClick={() =>
              setTabs((ts) => [...ts, { key: `new-${Date.now()}`, name: `T${ts.length + 1}` }])
            }
          >
            +
          </button>
        </div>
        <span
          role="status"
          style={{
            marginLeft: 'auto',
            display: 'flex',
            alignItems: 'center',
            gap: '0.4rem',
            color: 'var(--muted)',
          }}
        >
          <span
            aria-hidden
            style={{
              width: 9,
              height: 9,
              borderRadius: '50%',
              background: badge,
              display: 'inline-block',
            }}
          />
          {STATE_TEXT[state]}
          {state === 'reconnecting' && detail ? ` (${detail})` : ''} · host{' '}
          <code>{saved.hostname}</code>
        </span>
        <button onClick={() => void end()}>End session</button>
      </div>
      {notice && (
        <p role="alert" style={{ margin: '0 1.2rem 0.4rem', color: 'var(--warn)' }}>
          {notice}
        </p>
      )}
      <div
        style={{
          position: 'relative',
          flex: 1,
          margin: '0 1.2rem 1.2rem',
          background: 'var(--term-bg)',
          borderRadius: 8,
          overflow: 'hidden',
          minHeight: 320,
        }}
      >
        {tabs.map((t, i) => (
          <XtermView
            key={t.key}
            client={client}
            {...(t.id ? { termId: t.id } : {})}
            name={t.name}
            active={i === active}
            onOpened={opened(t.key)}
            onError={(m) => setNotice(`Terminal ${t.name}: ${m}`)}
          />
        ))}
        {state === 'ended' && (
          <div
            style={{
              position: 'absolute',
              inset: 0,
              display: 'grid',
              placeItems: 'center',
              background: 'rgba(13,17,23,0.85)',
              color: '#e6edf3',
            }}
          >
            <div style={{ textAlign: 'center' }}>
              <p>This session has ended{detail ? ` (${detail})` : ''}.</p>
              <button className="primary" onClick={() => persist(null)}>
                Start a new sandbox
              </button>
            </div>
          </div>
        )}
      </div>
    </section>
  );
}

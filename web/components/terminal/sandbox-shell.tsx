'use client';
/**
 * A minimal page body: start a sandbox, then terminals into it in tabs.
 * The session (id + token) and the open terminal ids live in sessionStorage,
 * so a reload re-attaches to the same shells and replays their output.
 */
import { useEffect, useMemo, useState } from 'react';
import type { SessionCreated } from '../../../server/protocol/index';
import type { RemoteTerminal } from '../../lib/terminal-client';
import { useSessionClient } from '../../lib/use-session-client';
import { useStored, writeStored } from '../../lib/use-stored';
import styles from './sandbox-shell.module.css';
import { TerminalOverlay, TerminalTabs } from './terminal-tabs';

const KEY = 'underlay.session';
interface Saved extends SessionCreated {
  terms: string[];
}

function parse(raw: string | null): Saved | null {
  try {
    return JSON.parse(raw ?? 'null') as Saved | null;
  } catch {
    return null;
  }
}

function persist(s: Saved | null): void {
  writeStored(KEY, s && JSON.stringify(s), 'session');
}

export function SandboxShell() {
  const raw = useStored(KEY, 'session');
  const saved = useMemo(() => (raw === undefined ? undefined : parse(raw)), [raw]);
  const [starting, setStarting] = useState(false);
  const [error, setError] = useState<string | null>(null);

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

  // Until hydrated, sessionStorage is unknown: neither the button nor the terminals.
  if (saved === undefined) return <div className={styles.placeholder} />;
  if (!saved) {
    return (
      <section className={styles.intro}>
        <p>
          Start a sandbox: a fresh Linux system where you are root - in a user namespace, with its
          own hostname, processes, network and cgroups - on this server&apos;s real kernel.
        </p>
        <button className="primary" onClick={() => void start()} disabled={starting}>
          {starting ? 'Starting…' : 'Start a sandbox'}
        </button>
        {error && (
          <p role="alert" className={styles.error}>
            {error}
          </p>
        )}
      </section>
    );
  }
  return <Terminals saved={saved} />;
}

interface Tab {
  key: string;
  name: string;
  /** The terminal this tab re-attaches to (after a reload). */
  attach?: string;
  /** The terminal's id once the server opened it. */
  id?: string;
}

function Terminals({ saved }: { saved: Saved }) {
  const { client, state, detail, error, setError } = useSessionClient(saved.session, saved.token);
  const [tabs, setTabs] = useState<Tab[]>(() =>
    saved.terms.length
      ? saved.terms.map((id, i) => ({ key: id, name: `T${i + 1}`, attach: id, id }))
      : [{ key: 'new-1', name: 'T1' }],
  );
  const [active, setActive] = useState(() => tabs[0]?.key ?? '');

  // The open terminals survive a reload: their ids go to sessionStorage.
  const terms = tabs.flatMap((t) => (t.id ? [t.id] : [])).join(' ');
  useEffect(() => {
    persist({ ...saved, terms: terms ? terms.split(' ') : [] });
  }, [saved, terms]);

  const opened = (key: string, t: RemoteTerminal) =>
    setTabs((ts) => ts.map((x) => (x.key === key ? { ...x, id: t.id, name: t.name } : x)));

  const end = async () => {
    await fetch(`/api/sessions/${saved.session}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${saved.token}` },
    }).catch(() => {});
    persist(null);
  };

  if (!client) return null;
  return (
    <TerminalTabs
      variant="inset"
      connection={{ client, state, detail }}
      tabs={tabs.map((t) => ({
        key: t.key,
        name: t.name,
        ...(t.attach ? { termId: t.attach } : {}),
      }))}
      active={active}
      onSelect={setActive}
      onOpened={opened}
      onError={setError}
      alert={error}
      tools={
        <button
          aria-label="Open another terminal"
          onClick={() =>
            setTabs((ts) => [...ts, { key: `new-${Date.now()}`, name: `T${ts.length + 1}` }])
          }
        >
          +
        </button>
      }
      status={
        <>
          {' '}
          · host <code>{saved.hostname}</code>
        </>
      }
      trailing={<button onClick={() => void end()}>End session</button>}
      overlay={
        state === 'ended' && (
          <TerminalOverlay>
            <div>
              <p>This session has ended{detail ? ` (${detail})` : ''}.</p>
              <button className="primary" onClick={() => persist(null)}>
                Start a new sandbox
              </button>
            </div>
          </TerminalOverlay>
        )
      }
    />
  );
}

'use client';
/**
 * A session's terminals in tabs, for the lab view and the free sandbox: the
 * tab bar with the connection state, one xterm per tab (the visible one
 * first, the others once it is up: each costs a render), a line for
 * terminal errors, and an overlay over the terminals (reconnecting, ended).
 */
import dynamic from 'next/dynamic';
import { useState, type ReactNode } from 'react';
import type { ConnectionState, RemoteTerminal, SessionClient } from '../../lib/terminal-client';
import type { SessionConnection } from '../../lib/use-session-client';
import { useStored, writeStored } from '../../lib/use-stored';
import styles from './terminal-tabs.module.css';

const SCREEN_READER_KEY = 'underlay.screenReader';

const LazyXtermView = dynamic(() => import('./xterm-view'), {
  ssr: false,
  loading: () => <div className={styles.loading}>Loading terminal…</div>,
});
/**
 * The module itself once loaded (the catalog and the lab page fetch it
 * early): rendered directly, a first terminal skips next/dynamic's fetch of
 * its loader chunk and a suspended render, ~20-40 ms on the way to the prompt.
 * (Only in the browser: the tabs render only with a live client, never on the server.)
 */
let LoadedXtermView: typeof LazyXtermView | null = null;
if (typeof window !== 'undefined')
  void import('./xterm-view').then((m) => (LoadedXtermView = m.default));

const STATE_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  connected: 'Connected',
  reconnecting: 'Connection lost - reconnecting…',
  ended: 'Session ended',
};

export interface TerminalTab {
  /** Identifies the tab (React key, `active`). */
  key: string;
  /** The tab's label, and the name of a terminal it opens. */
  name: string;
  /** Attach to this existing terminal instead of opening a new one. */
  termId?: string;
  exited?: boolean;
}

export interface TerminalTabsProps {
  variant: 'docked' | 'inset';
  /** The session's connection (its client is open: callers render this only then). */
  connection: Pick<SessionConnection, 'state' | 'detail'> & { client: SessionClient };
  tabs: readonly TerminalTab[];
  active: string;
  onSelect: (key: string) => void;
  onOpened?: (key: string, terminal: RemoteTerminal) => void;
  onExit?: (key: string, code: number) => void;
  onError: (message: string) => void;
  /** Shown under the bar until it is cleared. */
  alert?: string | null;
  /** After the tabs: buttons such as "+". */
  tools?: ReactNode;
  /** After the connection state, inside the status. */
  status?: ReactNode;
  /** At the end of the bar. */
  trailing?: ReactNode;
  /** Over the terminals: a TerminalOverlay. */
  overlay?: ReactNode;
}

export function TerminalTabs({
  variant,
  connection,
  tabs,
  active,
  onSelect,
  onOpened,
  onExit,
  onError,
  alert,
  tools,
  status,
  trailing,
  overlay,
}: TerminalTabsProps) {
  const { client, state, detail } = connection;
  // Remembered per browser, for every terminal.
  const screenReader = useStored(SCREEN_READER_KEY) === '1';
  const [visited, setVisited] = useState<readonly string[]>([active]);
  const [allMounted, setAllMounted] = useState(false);
  // Chosen once: a component that changed type between renders would remount every terminal.
  const [XtermView] = useState(() => LoadedXtermView ?? LazyXtermView);
  // A tab shown before the first terminal is up mounts at once (adjusting state during render).
  if (!allMounted && !visited.includes(active)) setVisited([...visited, active]);

  return (
    <div className={`${styles.root} ${styles[variant]}`} data-terminal-root>
      <div className={styles.bar}>
        <div role="tablist" aria-label="Terminals" className={styles.tabs}>
          {tabs.map((t) => (
            <button
              key={t.key}
              role="tab"
              aria-selected={t.key === active}
              aria-controls={`term-${t.name}`}
              onClick={(e) => {
                onSelect(t.key);
                // A click on the tab already shown leaves the focus on the tab,
                // where the next keys were lost: give it back to the terminal.
                // (Switching tabs focuses the new terminal in XtermView.)
                if (t.key === active)
                  e.currentTarget
                    .closest('[data-terminal-root]')
                    ?.querySelector<HTMLElement>(`#${CSS.escape(`term-${t.name}`)} textarea`)
                    ?.focus();
              }}
            >
              {t.name}
              {t.exited ? ' (exited)' : ''}
            </button>
          ))}
        </div>
        {tools}
        <button
          className="small"
          aria-pressed={screenReader}
          onClick={() => writeStored(SCREEN_READER_KEY, screenReader ? null : '1')}
          title="Mirror the terminal as text for screen readers"
        >
          Screen reader
        </button>
        <span className={styles.keys} id="terminal-keys">
          <kbd>Ctrl</kbd>+<kbd>Shift</kbd>+<kbd>E</kbd> leaves the terminal
        </span>
        <span className={styles.status} role="status" data-testid="conn-state">
          <span className={styles.dot} data-state={state} aria-hidden />
          {STATE_TEXT[state]}
          {state === 'reconnecting' && detail ? ` (${detail})` : ''}
          {status}
        </span>
        {trailing}
      </div>
      {alert && (
        <p role="alert" className="notice">
          {alert}
        </p>
      )}
      <div className={styles.area}>
        {tabs.map((t) => (
          <div
            key={t.key}
            id={`term-${t.name}`}
            role="tabpanel"
            aria-label={t.name}
            aria-describedby="terminal-keys"
            className={styles.panel}
            hidden={t.key !== active}
            data-terminal-name={t.name}
          >
            {(allMounted || visited.includes(t.key)) && (
              <XtermView
                client={client}
                termId={t.termId}
                // Only a new terminal needs a name (and a relabelled tab must not reopen it).
                name={t.termId ? undefined : t.name}
                active={t.key === active}
                screenReader={screenReader}
                onOpened={(rt) => {
                  onOpened?.(t.key, rt);
                  setTimeout(() => setAllMounted(true), 50);
                }}
                onError={(m) => onError(`Terminal ${t.name}: ${m}`)}
                onExit={(code) => onExit?.(t.key, code)}
              />
            )}
          </div>
        ))}
        {overlay}
      </div>
    </div>
  );
}

/** Covers the terminal area: a state the terminals cannot show themselves. */
export function TerminalOverlay({
  children,
  note,
  role,
}: {
  children: ReactNode;
  /** A quieter second line. */
  note?: string;
  role?: 'status';
}) {
  return (
    <div className={styles.overlay} role={role}>
      {note ? (
        <p>
          {children}
          <br />
          <span className={styles.note}>{note}</span>
        </p>
      ) : (
        children
      )}
    </div>
  );
}

/** The terminal area before there are terminals: starting, failed, ended. */
export function TerminalPlaceholder({ children }: { children: ReactNode }) {
  return (
    <div className={styles.area}>
      <TerminalOverlay>{children}</TerminalOverlay>
    </div>
  );
}

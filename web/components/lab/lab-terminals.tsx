'use client';
/**
 * The lab's named terminals (T1, T2, ...) in tabs, attached to the session's
 * existing shells from offset 0, so a reload shows everything again. A shell
 * that exited can be replaced; a lost connection says the sandbox is safe.
 */
import { useState } from 'react';
import type { LabSession } from '../../../server/protocol/index';
import type { SessionConnection } from '../../lib/use-session-client';
import { TerminalOverlay, TerminalTabs } from '../terminal/terminal-tabs';

export function LabTerminals({
  session,
  connection,
  active,
  onActive,
  onLost,
}: {
  session: LabSession;
  connection: SessionConnection;
  active: string;
  onActive: (name: string) => void;
  /** A shell is gone: ask for the session again (the server starts new shells). */
  onLost: () => void;
}) {
  const [exited, setExited] = useState<string[]>([]);
  const { client, state, detail, error, setError } = connection;
  if (!client) return null;
  return (
    <TerminalTabs
      variant="docked"
      connection={{ client, state, detail }}
      tabs={session.terminals.map((t) => ({
        key: t.name,
        name: t.name,
        termId: t.term,
        exited: exited.includes(t.name),
      }))}
      active={active}
      onSelect={onActive}
      onExit={(name) => setExited((x) => (x.includes(name) ? x : [...x, name]))}
      onError={setError}
      alert={error}
      tools={
        exited.length > 0 && (
          <button className="small" onClick={onLost}>
            New shell for {exited.join(', ')}
          </button>
        )
      }
      overlay={
        state === 'reconnecting' && (
          <TerminalOverlay role="status" note="Your sandbox keeps running; nothing is lost.">
            Connection to the server lost - reconnecting…
          </TerminalOverlay>
        )
      }
    />
  );
}

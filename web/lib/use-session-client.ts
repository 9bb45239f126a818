/**
 * The terminal connection of one session for a React tree: the SessionClient
 * (connected while mounted, closed on unmount or when the session changes),
 * its connection state, and the last error to show the student.
 */
import { useEffect, useEffectEvent, useMemo, useState } from 'react';
import {
  hold,
  sessionClientFor,
  type ConnectionState,
  type SessionClient,
} from './terminal-client';

export interface SessionConnection {
  /** Null while there is no session. */
  client: SessionClient | null;
  state: ConnectionState;
  /** Why the connection dropped, while it is reconnecting or ended. */
  detail: string | undefined;
  /** The last protocol or terminal error, until dismissed or the session changes. */
  error: string | null;
  setError(message: string | null): void;
}

export function useSessionClient(
  session: string | undefined,
  token: string | undefined,
  /** The server may have lost our shells: the connection came back after a drop, or ended. */
  onLost?: () => void,
): SessionConnection {
  // Creating a client opens nothing (connect() does, in the effect), so render
  // stays pure; one the session's answer already connected (preconnect) is taken as it is.
  const client = useMemo(
    () => (session && token ? sessionClientFor(window.location.origin, { session, token }) : null),
    [session, token],
  );
  // State is kept with the client it belongs to: a new client starts from scratch.
  const [conn, setConn] = useState<{
    client: SessionClient | null;
    state: ConnectionState;
    detail?: string;
  }>({ client: null, state: 'connecting' });
  const [error, setErrorFor] = useState<{ client: SessionClient | null; message: string | null }>({
    client: null,
    message: null,
  });
  const lost = useEffectEvent(() => onLost?.());

  useEffect(() => {
    if (!client) return;
    let dropped = false;
    const unhold =
      session && token ? hold(window.location.origin, { session, token }, client) : null;
    client.connect();
    const offState = client.onState((state, detail) => {
      setConn({ client, state, ...(detail !== undefined ? { detail } : {}) });
      // Back after a drop: the server may have restarted with new shells.
      if (state === 'reconnecting') dropped = true;
      if (state === 'connected' && dropped) {
        dropped = false;
        lost();
      }
      if (state === 'ended') lost();
    });
    const offError = client.onError((e) => setErrorFor({ client, message: e.message }));
    return () => {
      offState();
      offError();
      client.close();
      unhold?.();
    };
  }, [client, session, token]);

  const current = conn.client === client && client !== null;
  return {
    client,
    state: current ? conn.state : 'connecting',
    detail: current ? conn.detail : undefined,
    error: error.client === client ? error.message : null,
    setError: (message) => setErrorFor({ client, message }),
  };
}

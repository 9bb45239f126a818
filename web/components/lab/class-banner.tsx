'use client';
/**
 * What a student in a class sees of their instructor (docs/classroom.md):
 * the instructor's latest notice (sent live over the terminal socket, or
 * fetched from /api/me when the page opens within the hour), and a badge
 * while the instructor watches this lab's terminals. Notices are text.
 */
import { useEffect, useState } from 'react';
import type { ClassNotice, Me } from '../../../server/protocol/index';
import { api } from '../../lib/api';
import type { SessionClient } from '../../lib/terminal-client';
import { useStored, writeStored } from '../../lib/use-stored';

const DISMISSED_KEY = 'underlay.noticeDismissed';

export function ClassNoticeBanner({ client }: { client: SessionClient | null }) {
  const [notice, setNotice] = useState<ClassNotice | undefined>();
  const dismissed = Number(useStored(DISMISSED_KEY) ?? 0);
  useEffect(() => {
    let current = true;
    api<Me>('GET', '/api/me').then(
      (me) => {
        const newest = me.cohorts
          .flatMap((c) => (c.notice ? [c.notice] : []))
          .sort((a, b) => b.at - a.at)[0];
        if (current && newest) setNotice((n) => (n && n.at > newest.at ? n : newest));
      },
      () => undefined, // no notice is better than an error line about one
    );
    return () => {
      current = false;
    };
  }, []);
  useEffect(() => client?.onNotice((n) => setNotice(n)), [client]);
  if (!notice || notice.at <= dismissed) return null;
  return (
    <p className="notice" role="status" data-testid="class-notice">
      <strong>From your instructor ({new Date(notice.at).toLocaleTimeString()}):</strong>{' '}
      {notice.text}{' '}
      <button className="link" onClick={() => writeStored(DISMISSED_KEY, String(notice.at))}>
        Dismiss
      </button>
    </p>
  );
}

/** Shown while an instructor's read-only view is attached to this session. */
export function WatchedBadge({ client }: { client: SessionClient | null }) {
  const [count, setCount] = useState(0);
  // onWatchers reports the count at once (0 for a new client), then every change.
  useEffect(() => client?.onWatchers(setCount), [client]);
  if (!count) return null;
  return (
    <span className="muted" role="status" data-testid="watched">
      Your instructor is watching your terminals (read-only)
    </span>
  );
}

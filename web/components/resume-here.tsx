'use client';
/**
 * /resume#<key>: makes this browser the student who joined elsewhere
 * (POST /api/me/resume). The key is in the #fragment, so it never reaches a
 * URL the server or a proxy logs; it is posted once and dropped from the
 * address bar.
 */
import Link from 'next/link';
import { useEffect, useRef, useState } from 'react';
import type { Me } from '../../server/protocol/index';
import { api, describeError } from '../lib/api';
import { ErrorBox, type ErrorInfo } from './error-box';

export function ResumeHere() {
  const [me, setMe] = useState<Me | undefined>();
  const [error, setError] = useState<ErrorInfo | undefined>();
  const posted = useRef(false);
  useEffect(() => {
    if (posted.current) return; // once (React may run an effect twice in development)
    posted.current = true;
    const key = window.location.hash.slice(1);
    history.replaceState(null, '', window.location.pathname);
    api<Me>('POST', '/api/me/resume', { key }).then(setMe, (e) => setError(describeError(e)));
  }, []);
  if (error) return <ErrorBox title="Could not continue: " error={error} />;
  if (!me) return <p className="muted">Checking the link…</p>;
  return (
    <div role="status" className="result pass">
      <strong>This browser is you now.</strong>{' '}
      {me.cohorts.length
        ? `Your class${me.cohorts.length > 1 ? 'es' : ''}: ${me.cohorts.map((c) => `${c.cohort} (as ${c.name})`).join(', ')}. `
        : ''}
      <Link href="/">Your labs</Link>
    </div>
  );
}

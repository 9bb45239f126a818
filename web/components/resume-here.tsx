'use client';
/**
 * /resume#<key>: makes this browser the student who joined elsewhere
 * (POST /api/me/resume). The key is in the #fragment, so it never reaches a
 * URL the server or a proxy logs, and it is dropped from the address bar at
 * once. Opening a link is not consent: the page first says whose it is (and
 * who this browser is now), and switches only on "Continue as ...". Without
 * that step a classmate's link silently made a browser theirs.
 */
import Link from 'next/link';
import { useEffect, useRef, useState } from 'react';
import type { Me, Membership, ResumePreview } from '../../server/protocol/index';
import { api, describeError } from '../lib/api';
import { ErrorBox, type ErrorInfo } from './error-box';

const names = (cs: Membership[]) => cs.map((c) => `${c.name} in ${c.cohort}`).join(', ');

export function ResumeHere() {
  const key = useRef('');
  const [preview, setPreview] = useState<ResumePreview | undefined>();
  const [me, setMe] = useState<Me | undefined>();
  const [error, setError] = useState<ErrorInfo | undefined>();
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (key.current) return; // once (React may run an effect twice in development)
    key.current = window.location.hash.slice(1) || ' ';
    history.replaceState(null, '', window.location.pathname);
    api<ResumePreview>('POST', '/api/me/resume', { key: key.current, preview: true }).then(
      setPreview,
      (e) => setError(describeError(e)),
    );
  }, []);
  async function go() {
    setBusy(true);
    try {
      setMe(await api<Me>('POST', '/api/me/resume', { key: key.current }));
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  }
  if (error) return <ErrorBox title="Could not continue: " error={error} />;
  if (me)
    return (
      <div role="status" className="result pass">
        <strong>This browser is you now.</strong>{' '}
        {me.cohorts.length ? `Your classes: ${names(me.cohorts)}. ` : ''}
        <Link href="/">Your labs</Link>
      </div>
    );
  if (!preview) return <p className="muted">Checking the link…</p>;
  const who = preview.cohorts[0]?.name ?? 'the student of this link';
  return (
    <div data-testid="resume-preview">
      <p>
        This link is{' '}
        <strong>{preview.cohorts.length ? names(preview.cohorts) : 'a student in no class'}</strong>
        . Continue only if that is you: whoever opens it is that student, with their progress and
        their sandboxes.
      </p>
      {preview.current && (
        <div className="result info" role="note">
          <strong>This browser is {names(preview.current.cohorts)} now.</strong>
          Continuing replaces that here (not anywhere else: that student&apos;s own resume link
          brings them back).
        </div>
      )}
      <p>
        <button className="primary" onClick={() => void go()} disabled={busy}>
          Continue as {who}
        </button>{' '}
        <Link href="/">Cancel</Link>
      </p>
    </div>
  );
}

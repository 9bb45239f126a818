'use client';
/**
 * The join form (POST /api/cohorts/join): the code from the link, or typed,
 * and a display name. A refusal shows the server's words and hint; success
 * names the class and links to its labs.
 */
import Link from 'next/link';
import { useSearchParams } from 'next/navigation';
import { useState, type FormEvent } from 'react';
import type { Joined } from '../../server/protocol/index';
import { api, describeError } from '../lib/api';
import { ErrorBox, type ErrorInfo } from './error-box';
import styles from './join-form.module.css';

export function JoinForm() {
  const [code, setCode] = useState(useSearchParams().get('code') ?? '');
  const [name, setName] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ErrorInfo | undefined>();
  const [joined, setJoined] = useState<Joined | undefined>();

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      setJoined(await api<Joined>('POST', '/api/cohorts/join', { code, name }));
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  }

  if (joined)
    return (
      <>
        <div role="status" className="result pass">
          <strong>
            {joined.again ? 'Welcome back' : 'You are in'}: {joined.cohort}, as {joined.name}.
          </strong>{' '}
          Its labs:{' '}
          {joined.labs.map((l, i) => (
            <span key={l}>
              {i > 0 && ', '}
              <Link href={`/labs/${encodeURIComponent(l)}`}>{l}</Link>
            </span>
          ))}
          .
        </div>
        <ResumeLink resumeKey={joined.resume} />
      </>
    );

  return (
    <form className={styles.form} onSubmit={submit}>
      <label>
        Class code
        <input
          name="code"
          value={code}
          onChange={(e) => setCode(e.target.value)}
          placeholder="ACDE-FG23"
          autoComplete="off"
          autoCapitalize="characters"
          spellCheck={false}
          required
          maxLength={40}
        />
      </label>
      <label>
        Your name, as your instructor will see it
        <input
          name="name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          autoComplete="name"
          required
          maxLength={40}
        />
      </label>
      <button type="submit" className="primary" disabled={busy}>
        {busy ? 'Joining…' : 'Join'}
      </button>
      {error && <ErrorBox title="Could not join: " error={error} />}
    </form>
  );
}

/**
 * The link that makes another browser this same student (another device, a
 * lab PC after a laptop): shown after joining. It is a secret, like a
 * password: whoever opens it is this student.
 */
export function ResumeLink({ resumeKey }: { resumeKey: string }) {
  const [copied, setCopied] = useState(false);
  const link = typeof window === 'undefined' ? '' : `${window.location.origin}/resume#${resumeKey}`;
  return (
    <p className={styles.resume}>
      To continue on another device, open this link there (keep it to yourself: whoever opens it is
      you): <code data-testid="resume-link">{link}</code>{' '}
      <button
        type="button"
        className="small"
        onClick={() =>
          void navigator.clipboard?.writeText(link).then(
            () => setCopied(true),
            () => setCopied(false),
          )
        }
      >
        {copied ? 'Copied' : 'Copy'}
      </button>
    </p>
  );
}

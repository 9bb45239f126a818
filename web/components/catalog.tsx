'use client';
/** The lab catalog: a card per lab with the student's progress; unavailable labs say why. */
import Link from 'next/link';
import { useEffect, useState } from 'react';
import type { LabCard, LabList } from '../../server/protocol/index';
import { api, describeError, prefetch } from '../lib/api';
import styles from './catalog.module.css';

function Card({ lab }: { lab: LabCard }) {
  const pct = Math.round((100 * lab.progress.passed) / Math.max(1, lab.progress.total));
  const body = (
    <>
      <h2>{lab.title}</h2>
      <p>{lab.summary}</p>
      {!lab.available && <p className={styles.reason}>Not available here: {lab.reason}</p>}
      {lab.requires.length > 0 && (
        <p className={styles.requires}>
          After:{' '}
          {lab.requires.map((r, i) => (
            <span key={r.id}>
              {i > 0 && ', '}
              {r.title}
              {r.done ? ' ✓' : ''}
            </span>
          ))}
        </p>
      )}
      <div
        className={styles.progress}
        role="progressbar"
        aria-label={`${lab.title}: progress`}
        aria-valuemin={0}
        aria-valuemax={lab.progress.total}
        aria-valuenow={lab.progress.passed}
      >
        <div style={{ width: `${pct}%` }} />
      </div>
      <div className={styles.meta}>
        <span>
          {lab.progress.passed === lab.progress.total
            ? '✓ done'
            : lab.progress.passed || lab.progress.skipped
              ? `${lab.progress.passed}/${lab.progress.total} steps${lab.progress.skipped ? ` (${lab.progress.skipped} skipped)` : ''}`
              : `${lab.steps} steps`}
        </span>
        <span aria-hidden>·</span>
        <span>{lab.duration} min</span>
        <span aria-hidden>·</span>
        <span>{lab.difficulty}</span>
        {lab.tags.slice(0, 3).map((t) => (
          <span key={t} className={styles.tag}>
            {t}
          </span>
        ))}
      </div>
    </>
  );
  return lab.available ? (
    <Link
      href={`/labs/${lab.id}`}
      prefetch
      // `card`: the web benchmark waits for it (test/bench/web.bench.ts).
      className={`${styles.card} card`}
      data-testid={`lab-${lab.id}`}
      onClick={(e) => {
        // A plain click opens the lab here: start its sandbox while the page loads.
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        prefetch('GET', `/api/labs/${lab.id}`);
        prefetch('POST', `/api/labs/${lab.id}/session`);
      }}
    >
      {body}
    </Link>
  ) : (
    <div
      className={`${styles.card} ${styles.unavailable} card`}
      data-testid={`lab-${lab.id}`}
      aria-disabled
    >
      {body}
    </div>
  );
}

export function Catalog() {
  const [list, setList] = useState<LabList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    let current = true;
    api<LabList>('GET', '/api/labs').then(
      (l) => current && setList(l),
      (e) => current && setError(describeError(e).message),
    );
    return () => {
      current = false;
    };
  }, [attempt]);
  const retry = () => {
    setError(null);
    setAttempt((a) => a + 1);
  };
  // Starting a lab should feel instant: fetch the terminal code while the student reads.
  useEffect(() => {
    const t = setTimeout(() => void import('./terminal/xterm-view'), 300);
    return () => clearTimeout(t);
  }, []);

  if (error)
    return (
      <div role="alert" className="result fail">
        <strong>Could not load the labs.</strong> {error}{' '}
        <button className="small" onClick={retry}>
          Try again
        </button>
      </div>
    );
  if (!list)
    return (
      <p className="muted" aria-busy="true">
        Loading labs…
      </p>
    );
  const scope = list.scope;
  return (
    <>
      {scope && scope.cohorts.length > 0 && (
        <p className="muted" data-testid="class-scope">
          The labs of your class: {scope.cohorts.join(', ')}.
        </p>
      )}
      <div className={styles.cards}>
        {list.labs.map((l) => (
          <Card key={l.id} lab={l} />
        ))}
      </div>
      {list.labs.length === 0 &&
        (scope?.classesOnly && scope.cohorts.length === 0 ? (
          <p data-testid="class-scope">
            This server runs labs for its classes. <Link href="/join">Join your class</Link> with
            the code your instructor gave you.
          </p>
        ) : (
          <p>No labs are installed on this server.</p>
        ))}
      {list.problems.length > 0 && (
        <section className={styles.problems} aria-label="Lab problems">
          <strong>Some labs could not be loaded</strong> (for the instructor):
          <pre>{list.problems.join('\n')}</pre>
        </section>
      )}
    </>
  );
}

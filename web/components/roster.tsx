'use client';
/**
 * The instructor's view of a class: students × the labs' steps, refreshed
 * every 2 s (GET /api/instructor/cohorts/<name>, the token from the link's
 * #fragment as a bearer token). Everything students typed is shown as text.
 */
import { useSearchParams } from 'next/navigation';
import { useEffect, useState } from 'react';
import type { InstructorStudent, InstructorView, StepSummary } from '../../server/protocol/index';
import { api, describeError } from '../lib/api';
import { ErrorBox, type ErrorInfo } from './error-box';
import styles from './roster.module.css';

const REFRESH_MS = 2000;
/** A student on the same step longer than this is marked stuck (`?stuck=MINUTES` changes it). */
const STUCK_MINUTES = 10;

const minutes = (ms: number) => Math.max(0, Math.floor(ms / 60_000));

function cell(s: StepSummary | undefined): { text: string; className: string; label: string } {
  if (!s) return { text: '', className: '', label: 'not started' };
  const extra = `${s.attempts} check${s.attempts === 1 ? '' : 's'}, ${s.hintsShown} hint${s.hintsShown === 1 ? '' : 's'}`;
  if (s.passed) return { text: '✓', className: styles.passed ?? '', label: `passed (${extra})` };
  if (s.skipped) return { text: '↷', className: styles.skipped ?? '', label: `skipped (${extra})` };
  if (s.attempts > 0)
    return {
      text: String(s.attempts),
      className: styles.trying ?? '',
      label: `not yet (${extra})`,
    };
  return { text: '', className: '', label: 'not started' };
}

function token(): string {
  return new URLSearchParams(window.location.hash.slice(1)).get('token') ?? '';
}

const auth = () => ({ authorization: `Bearer ${token()}` });

/** The gradebook file, fetched with the token (a plain link could not send it) and saved. */
async function download(cohort: string, format: 'csv' | 'json'): Promise<void> {
  const r = await fetch(
    `/api/instructor/cohorts/${encodeURIComponent(cohort)}/export?format=${format}`,
    {
      headers: auth(),
    },
  );
  if (!r.ok) return;
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = `${cohort}-progress.${format}`;
  a.click();
  URL.revokeObjectURL(url);
}

function lastSeen(at: InstructorView['students'][number]['at'], now: number): string {
  const last = Math.max(0, ...Object.values(at).map((a) => a.last ?? 0));
  if (!last) return '-';
  const m = minutes(now - last);
  return m === 0 ? 'just now' : `${m} min ago`;
}

/** GET `url` with the instructor token now and every REFRESH_MS while mounted; the last error, if the last try failed. */
function usePolled<T>(url: string): { data: T | undefined; error: ErrorInfo | undefined } {
  const [data, setData] = useState<T | undefined>();
  const [error, setError] = useState<ErrorInfo | undefined>();
  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const v = await api<T>('GET', url, undefined, auth());
        if (stop) return;
        setData(v);
        setError(undefined);
      } catch (e) {
        if (!stop) setError(describeError(e));
      }
      if (!stop) timer = setTimeout(() => void load(), REFRESH_MS);
    };
    void load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [url]);
  return { data, error };
}

export function Roster() {
  const params = useSearchParams();
  const cohort = params.get('cohort') ?? '';
  const stuckMin = Number(params.get('stuck')) > 0 ? Number(params.get('stuck')) : STUCK_MINUTES;
  const [selected, setSelected] = useState<string | undefined>();
  const { data: view, error } = usePolled<InstructorView>(
    `/api/instructor/cohorts/${encodeURIComponent(cohort)}`,
  );

  if (!view)
    return error ? <ErrorBox title="Cannot show the class: " error={error} /> : <p>Loading…</p>;
  return (
    <>
      <h1>
        {view.cohort}{' '}
        <span className={styles.meta}>
          ({view.state}, code {view.code})
        </span>
      </h1>
      <p className={styles.meta}>
        {view.students.length} student{view.students.length === 1 ? '' : 's'}
        {view.seats !== undefined ? ` of ${view.seats} seats` : ''}; refreshed every 2 s. ✓ passed,
        a number: checks so far, ↷ skipped; outlined: where the student is, red after {stuckMin}{' '}
        minutes on it.
      </p>
      <p className={styles.actions}>
        <button type="button" onClick={() => void download(view.cohort, 'csv')}>
          Export CSV
        </button>{' '}
        <button type="button" onClick={() => void download(view.cohort, 'json')}>
          Export JSON
        </button>
      </p>
      {error && <ErrorBox title="Refresh failed: " error={error} />}
      <div className={styles.scroll}>
        <table className={styles.table} data-testid="roster">
          <thead>
            <tr>
              <th rowSpan={2}>Student</th>
              <th rowSpan={2}>Last seen</th>
              {view.labs.map((l) => (
                <th key={l.id} colSpan={l.steps.length} scope="colgroup">
                  {l.title}
                </th>
              ))}
            </tr>
            <tr>
              {view.labs.flatMap((l) =>
                l.steps.map((s, i) => (
                  <th key={`${l.id}/${s.id}`} scope="col" title={s.title}>
                    {i + 1}
                  </th>
                )),
              )}
            </tr>
          </thead>
          <tbody>
            {view.students.map((st, row) => (
              <tr key={row} data-student={st.name}>
                <th scope="row">
                  <button
                    type="button"
                    className="link"
                    aria-expanded={selected === st.key}
                    onClick={() => setSelected(selected === st.key ? undefined : st.key)}
                  >
                    {st.name}
                  </button>
                </th>
                <td className={styles.seen}>{lastSeen(st.at, view.now)}</td>
                {view.labs.flatMap((l) =>
                  l.steps.map((s) => {
                    const c = cell(st.progress[l.id]?.[s.id]);
                    const at = st.at[l.id];
                    const here = at?.step === s.id;
                    const onIt = here && at.since !== undefined ? minutes(view.now - at.since) : 0;
                    const stuck =
                      here && at.since !== undefined && view.now - at.since >= stuckMin * 60_000;
                    return (
                      <td
                        key={`${l.id}/${s.id}`}
                        className={[
                          c.className,
                          here ? styles.current : '',
                          stuck ? styles.stuck : '',
                        ]
                          .filter(Boolean)
                          .join(' ')}
                        title={`${st.name}, ${l.id} / ${s.title}: ${c.label}${here ? `; on this step for ${onIt} min` : ''}`}
                        data-step={`${l.id}/${s.id}`}
                        {...(here ? { 'data-current': stuck ? 'stuck' : 'yes' } : {})}
                      >
                        {c.text}
                      </td>
                    );
                  }),
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {selected && (
        <StudentPanel
          key={selected}
          cohort={view.cohort}
          studentKey={selected}
          labTitle={(id) => view.labs.find((l) => l.id === id)?.title ?? id}
        />
      )}
      <h2 className={styles.h2}>Where checks fail most</h2>
      {view.failing.length === 0 ? (
        <p className={styles.meta}>No failed check yet.</p>
      ) : (
        <ul className={styles.failing} data-testid="failing">
          {view.failing.map((f, i) => {
            const lab = view.labs.find((l) => l.id === f.lab);
            const step = lab?.steps.find((st) => st.id === f.step);
            return (
              <li key={i} data-step={`${f.lab}/${f.step}`}>
                <span className={styles.where}>
                  {lab?.title ?? f.lab} / {step?.title ?? f.step}
                </span>{' '}
                <span className={styles.count}>
                  ×{f.count}, {f.students} student{f.students === 1 ? '' : 's'}
                </span>
                <pre className={styles.message}>{f.message || '(no message)'}</pre>
              </li>
            );
          })}
        </ul>
      )}
    </>
  );
}

/** One student up close: their labs with a live sandbox (end one), their checks and hints. */
function StudentPanel({
  cohort,
  studentKey,
  labTitle,
}: {
  cohort: string;
  studentKey: string;
  labTitle: (id: string) => string;
}) {
  const base = `/api/instructor/cohorts/${encodeURIComponent(cohort)}/students/${studentKey}`;
  const { data: st, error: loadError } = usePolled<InstructorStudent>(base);
  const [endError, setEndError] = useState<ErrorInfo | undefined>();
  const error = endError ?? loadError;

  async function end(lab: string) {
    if (
      !window.confirm(
        `End ${st?.name}'s sandbox of ${labTitle(lab)}? Their progress and files are kept.`,
      )
    )
      return;
    try {
      await api('POST', `${base}/labs/${encodeURIComponent(lab)}/end`, {}, auth());
      setEndError(undefined);
    } catch (e) {
      setEndError(describeError(e));
    }
  }

  return (
    <section className={styles.panel} data-testid="student-panel" aria-label="Student details">
      {error && <ErrorBox title="Cannot show the student: " error={error} />}
      {st && (
        <>
          <h2 className={styles.h2}>{st.name}</h2>
          {st.live.length === 0 ? (
            <p className={styles.meta}>No lab sandbox running.</p>
          ) : (
            <p>
              Running:{' '}
              {st.live.map((lab) => (
                <span key={lab} className={styles.live}>
                  {labTitle(lab)}{' '}
                  <button type="button" className="small" onClick={() => void end(lab)}>
                    End session
                  </button>
                </span>
              ))}
            </p>
          )}
          <table className={styles.history}>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Lab / step</th>
                <th scope="col">What</th>
                <th scope="col">Message</th>
              </tr>
            </thead>
            <tbody>
              {st.history.map((h, i) => (
                <tr key={i} data-kind={h.kind}>
                  <td>{new Date(h.at).toLocaleTimeString()}</td>
                  <td>
                    {h.lab} / {h.step}
                  </td>
                  <td>{h.kind}</td>
                  <td>
                    <pre className={styles.message}>{h.message}</pre>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}

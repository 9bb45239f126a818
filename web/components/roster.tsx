'use client';
/**
 * The instructor's view of a class: students × the labs' steps, refreshed
 * every 1.5 s (GET /api/instructor/cohorts/<name>, the token from the link's
 * #fragment as a bearer token). Everything students typed is shown as text.
 */
import { useSearchParams } from 'next/navigation';
import { useEffect, useState } from 'react';
import {
  LIMITS,
  type ClassNotice,
  type ClassWarmSeats,
  type InstructorStudent,
  type InstructorView,
  type StepAnalytics,
  type StepSummary,
} from '../../server/protocol/index';
import { api, describeError } from '../lib/api';
import { ErrorBox, type ErrorInfo } from './error-box';
import styles from './roster.module.css';
import { WatchTerminals } from './watch-terminals';

const REFRESH_MS = 1500;
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

/** An export, fetched with the token (a plain link could not send it) and saved. */
async function download(
  cohort: string,
  format: 'csv' | 'json',
  what: 'progress' | 'analytics' = 'progress',
): Promise<void> {
  const r = await fetch(
    `/api/instructor/cohorts/${encodeURIComponent(cohort)}/export?format=${format}&what=${what}`,
    {
      headers: auth(),
    },
  );
  if (!r.ok) return;
  const url = URL.createObjectURL(await r.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = `${cohort}-${what}.${format}`;
  a.click();
  URL.revokeObjectURL(url);
}

function duration(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
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

/** A time, with its date unless it is today. */
const clock = (at: number) => {
  const d = new Date(at);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toDateString() === new Date().toDateString()
    ? time
    : `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
};

/**
 * The class's warm seats: sandboxes started ahead so a student's first
 * start is instant (cohorts.yaml `warm`). One line per lab.
 */
function WarmSeats({ view, warm }: { view: InstructorView; warm: ClassWarmSeats[] }) {
  return (
    <ul className={styles.warm} data-testid="warm-seats">
      {warm.map((w) => {
        const title = view.labs.find((l) => l.id === w.lab)?.title ?? w.lab;
        const ready = `${w.ready} ready on this host${w.preparing ? ', 1 starting' : ''}`;
        const over = view.state === 'closed' || view.state === 'ended';
        const state = over
          ? `none kept: the class is ${view.state}`
          : w.from !== undefined && view.now < w.from
            ? `made from ${clock(w.from)}, 15 minutes before the class starts`
            : w.wanting > 0
              ? `${ready}, ${w.wanting} still wanted by the class`
              : w.have >= w.asked
                ? 'all used: that many of its students have the lab'
                : 'none kept now';
        return (
          <li key={w.lab}>
            Warm seats of <strong>{title}</strong>: {state} (asked {w.asked}; {w.have} of its
            students have the lab).
          </li>
        );
      })}
    </ul>
  );
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
        {view.seats !== undefined ? ` of ${view.seats} seats` : ''}; refreshed every 1.5 s. ✓
        passed, a number: checks so far, ↷ skipped; outlined: where the student is, red after{' '}
        {stuckMin} minutes on it.
      </p>
      {view.warm && <WarmSeats view={view} warm={view.warm} />}
      <p className={styles.actions}>
        <button type="button" onClick={() => void download(view.cohort, 'csv')}>
          Export CSV
        </button>{' '}
        <button type="button" onClick={() => void download(view.cohort, 'json')}>
          Export JSON
        </button>
      </p>
      {view.state === 'closed' || view.state === 'ended' ? (
        <p className={styles.meta}>
          The class is {view.state}: its students are on their own again. Their progress and the
          exports stay; watching, resetting or moving them and notices do not.
        </p>
      ) : (
        <NoticeForm cohort={view.cohort} />
      )}
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
      {/* A student removed from the class leaves the roster, and their panel with it. */}
      {selected && view.students.some((x) => x.key === selected) && (
        <StudentPanel
          key={selected}
          cohort={view.cohort}
          studentKey={selected}
          labTitle={(id) => view.labs.find((l) => l.id === id)?.title ?? id}
          labSteps={(id) => view.labs.find((l) => l.id === id)?.steps ?? []}
          over={view.state === 'closed' || view.state === 'ended'}
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
                {f.nearMiss && (
                  <span className={styles.nearMiss} data-testid="near-miss">
                    near miss: {f.nearMiss}
                  </span>
                )}
                <pre className={styles.message}>{f.message || '(no message)'}</pre>
              </li>
            );
          })}
        </ul>
      )}
      <Analytics view={view} />
    </>
  );
}

/** Per step: completion, median time, checks per pass, hint use (what to explain again, or rewrite). */
function Analytics({ view }: { view: InstructorView }) {
  const byLab = (lab: string) => view.analytics.filter((a) => a.lab === lab);
  const pct = (a: StepAnalytics) => (a.started ? `${Math.round(a.completion * 100)} %` : '-');
  return (
    <>
      <h2 className={styles.h2}>Steps</h2>
      <p className={styles.meta}>
        Of the students who started each lab: how many passed each step, in what median time from
        reaching it, with how many checks per pass, and how many needed a hint.{' '}
        <button
          type="button"
          className="small"
          onClick={() => void download(view.cohort, 'csv', 'analytics')}
        >
          Export steps CSV
        </button>
      </p>
      {view.labs.map((l) => (
        <table key={l.id} className={styles.analytics} data-testid="analytics" data-lab={l.id}>
          <caption>{l.title}</caption>
          <thead>
            <tr>
              <th scope="col">Step</th>
              <th scope="col">Passed</th>
              <th scope="col">Median time</th>
              <th scope="col">Checks per pass</th>
              <th scope="col">Hinted</th>
            </tr>
          </thead>
          <tbody>
            {byLab(l.id).map((a) => {
              const step = l.steps.find((st) => st.id === a.step);
              return (
                <tr key={a.step} data-step={`${a.lab}/${a.step}`}>
                  <th scope="row">{step?.title ?? a.step}</th>
                  <td>
                    {a.passed}/{a.started} ({pct(a)})
                  </td>
                  <td>{duration(a.medianMs)}</td>
                  <td>{a.checksPerPass ?? '-'}</td>
                  <td>{a.hinted}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ))}
    </>
  );
}

/** A short notice to every student of the class, shown on their pages at once. */
function NoticeForm({ cohort }: { cohort: string }) {
  const [text, setText] = useState('');
  const [sent, setSent] = useState<ClassNotice | undefined>();
  const [error, setError] = useState<ErrorInfo | undefined>();
  async function send(e: React.FormEvent) {
    e.preventDefault();
    try {
      const n = await api<ClassNotice>(
        'POST',
        `/api/instructor/cohorts/${encodeURIComponent(cohort)}/notice`,
        { text },
        auth(),
      );
      setSent(n);
      setText('');
      setError(undefined);
    } catch (err) {
      setError(describeError(err));
    }
  }
  return (
    <form className={styles.notice} onSubmit={(e) => void send(e)}>
      <label htmlFor="notice-text">Notice to the class</label>
      <input
        id="notice-text"
        value={text}
        maxLength={LIMITS.noticeChars}
        placeholder="e.g. Break until 11:00 - leave your shells running"
        onChange={(e) => setText(e.target.value)}
      />
      <button type="submit" disabled={!text.trim()}>
        Send
      </button>
      {sent && (
        <span className={styles.meta} role="status">
          Sent at {new Date(sent.at).toLocaleTimeString()}: {sent.text}
        </span>
      )}
      {error && <ErrorBox title="Not sent: " error={error} />}
    </form>
  );
}

/** One student up close: their labs with a live sandbox (end one), their checks and hints. */
function StudentPanel({
  cohort,
  studentKey,
  labTitle,
  labSteps,
  over,
}: {
  cohort: string;
  studentKey: string;
  /** The class is closed or ended: the student's running labs are not shown. */
  over: boolean;
  labTitle: (id: string) => string;
  labSteps: (id: string) => { id: string; title: string }[];
}) {
  const base = `/api/instructor/cohorts/${encodeURIComponent(cohort)}/students/${studentKey}`;
  const { data: st, error: loadError } = usePolled<InstructorStudent>(base);
  const [endError, setEndError] = useState<ErrorInfo | undefined>();
  const [watching, setWatching] = useState<string | undefined>();
  const error = endError ?? loadError;

  async function act(lab: string, action: 'end' | 'reset') {
    const question =
      action === 'end'
        ? `End ${st?.name}'s sandbox of ${labTitle(lab)}? Their progress and files are kept.`
        : `Reset ${st?.name}'s ${labTitle(lab)}? Their progress is forgotten, their sandbox ended and their files dropped; the lab starts afresh when they open it.`;
    if (!window.confirm(question)) return;
    try {
      await api('POST', `${base}/labs/${encodeURIComponent(lab)}/${action}`, {}, auth());
      setEndError(undefined);
    } catch (e) {
      setEndError(describeError(e));
    }
  }
  const [removed, setRemoved] = useState(false);
  async function removeFromClass() {
    const question = `Remove ${st?.name} from the class? Their seat is free for someone else; they leave the roster and the exports; their progress stays theirs, and they can join again with the code while a seat is free (to change the code: underlay cohort set --new-code, or code: in cohorts.yaml).`;
    if (!window.confirm(question)) return;
    try {
      await api('POST', `${base}/remove`, {}, auth());
      setRemoved(true);
      setEndError(undefined);
    } catch (e) {
      setEndError(describeError(e));
    }
  }
  const [moving, setMoving] = useState<string | undefined>();
  async function moveTo(lab: string, stepId: string) {
    const steps = labSteps(lab);
    const i = steps.findIndex((x) => x.id === stepId);
    const question = `Move ${st?.name} to the start of step ${i + 1} ("${steps[i]?.title}") of ${labTitle(lab)}? They get a fresh sandbox with the steps before it done for them; their files and running programs are lost.`;
    if (!window.confirm(question)) return;
    setMoving(lab);
    try {
      await api(
        'POST',
        `${base}/labs/${encodeURIComponent(lab)}/steps/${encodeURIComponent(stepId)}/restart`,
        {},
        auth(),
      );
      setEndError(undefined);
    } catch (e) {
      setEndError(describeError(e));
    } finally {
      setMoving(undefined);
    }
  }
  const watched = st?.live.find((l) => l.lab === watching);

  return (
    <section className={styles.panel} data-testid="student-panel" aria-label="Student details">
      {error && <ErrorBox title="Cannot show the student: " error={error} />}
      {st && (
        <>
          <h2 className={styles.h2}>
            {st.name}{' '}
            {!over && (
              <button
                type="button"
                className="small"
                disabled={removed}
                onClick={() => void removeFromClass()}
              >
                {removed ? 'Removed from the class' : 'Remove from class'}
              </button>
            )}
          </h2>
          {st.live.length === 0 ? (
            <p className={styles.meta}>
              {over
                ? 'The class is over: what the student runs now is not shown.'
                : 'No lab sandbox running.'}
            </p>
          ) : (
            <p>
              Running:{' '}
              {st.live.map(({ lab }) => (
                <span key={lab} className={styles.live}>
                  {labTitle(lab)}{' '}
                  <button
                    type="button"
                    className="small"
                    aria-pressed={watching === lab}
                    onClick={() => setWatching(watching === lab ? undefined : lab)}
                  >
                    {watching === lab ? 'Stop watching' : 'Watch terminals'}
                  </button>{' '}
                  <button type="button" className="small" onClick={() => void act(lab, 'reset')}>
                    Reset lab
                  </button>{' '}
                  <select
                    className="small"
                    aria-label={`Move ${st.name} to a step of ${labTitle(lab)}`}
                    value=""
                    disabled={moving === lab}
                    onChange={(e) => {
                      if (e.target.value) void moveTo(lab, e.target.value);
                    }}
                  >
                    <option value="">{moving === lab ? 'Moving…' : 'Move to step…'}</option>
                    {labSteps(lab).map((x, i) => (
                      <option key={x.id} value={x.id}>
                        {i + 1}. {x.title}
                      </option>
                    ))}
                  </select>{' '}
                  <button type="button" className="small" onClick={() => void act(lab, 'end')}>
                    End session
                  </button>
                </span>
              ))}
            </p>
          )}
          {watched && (
            <WatchTerminals
              key={`${watched.lab}:${watched.terminals.map((t) => t.term).join(',')}`}
              cohort={cohort}
              token={token()}
              studentKey={studentKey}
              live={watched}
            />
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

'use client';
/**
 * Live kernel-state panels of a step (labs/README.md#live-panels): the
 * namespaces the sandbox's processes are in, a cgroup's CPU use against its
 * quota, an overlay's layers, capabilities decoded. The server reads them
 * inside the sandbox only while this section is open, on screen and the tab
 * is visible, at most twice a second. Everything in them comes from the
 * student's sandbox: it is rendered as text, never as markup.
 */
import { useEffect, useRef, useState } from 'react';
import type {
  CapabilitiesPanel,
  CgroupCpuPanel,
  MountEntry,
  MountsPanel,
  NamespacesPanel,
  OverlayEntry,
  OverlayPanel,
  PanelData,
  PanelProc,
  PanelUpdate,
  StepView,
} from '../../../server/protocol/index';
import type { SessionClient } from '../../lib/terminal-client';
import styles from './kernel-panels.module.css';

/** CPU samples kept for the chart: 60 at two a second, the last 30 s. */
const HISTORY = 60;

function useOnScreen<T extends HTMLElement>(): [React.RefObject<T | null>, boolean] {
  const ref = useRef<T>(null);
  const [on, setOn] = useState(false);
  useEffect(() => {
    const el = ref.current;
    if (!el || typeof IntersectionObserver === 'undefined') return;
    const io = new IntersectionObserver(([e]) => setOn(!!e?.isIntersecting));
    io.observe(el);
    return () => io.disconnect();
  }, []);
  return [ref, on];
}

function usePageVisible(): boolean {
  const [v, setV] = useState(true);
  useEffect(() => {
    const f = () => setV(document.visibilityState === 'visible');
    f();
    document.addEventListener('visibilitychange', f);
    return () => document.removeEventListener('visibilitychange', f);
  }, []);
  return v;
}

export function KernelPanels({ client, step }: { client: SessionClient | null; step: StepView }) {
  const [open, setOpen] = useState(true);
  const [ref, onScreen] = useOnScreen<HTMLDetailsElement>();
  const visible = usePageVisible();
  const [update, setUpdate] = useState<PanelUpdate | null>(null);
  const [cpu, setCpu] = useState<Record<number, (number | null)[]>>({});
  const watching = !!client && open && onScreen && visible;

  useEffect(() => {
    if (!client || !watching) return;
    return client.watchPanels(step.id, (u) => {
      setUpdate(u);
      setCpu((h) => {
        const next = { ...h };
        u.panels.forEach((p, i) => {
          if (p.kind === 'cgroup-cpu')
            next[i] = [...(h[i] ?? []), p.exists ? (p.pct ?? null) : null].slice(-HISTORY);
        });
        return next;
      });
    });
  }, [client, step.id, watching]);

  if (!step.panels?.length) return null;
  return (
    <details
      className={styles.panels}
      open={open}
      ref={ref}
      onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)}
      data-testid="kernel-panels"
    >
      <summary>
        Live kernel state{' '}
        <span className="muted">
          {watching ? (update ? '· live' : '· reading…') : '· paused while hidden'}
        </span>
      </summary>
      {update?.panels.map((p, i) => (
        <Panel key={i} data={p} cpu={cpu[i] ?? []} />
      ))}
    </details>
  );
}

function Panel({ data, cpu }: { data: PanelData; cpu: (number | null)[] }) {
  switch (data.kind) {
    case 'namespaces':
      return <Namespaces p={data} />;
    case 'cgroup-cpu':
      return <CpuChart p={data} history={cpu} />;
    case 'overlay':
      return <Overlay p={data} />;
    case 'capabilities':
      return <Capabilities p={data} />;
    case 'mounts':
      return <Mounts p={data} />;
    default:
      return <p className="muted">This panel could not be read: {String(data.message)}</p>;
  }
}

function procLabel(x: PanelProc): string {
  return `${x.pid} ${x.comm}${x.term ? ` (${x.term})` : ''}`;
}

function Namespaces({ p }: { p: NamespacesPanel }) {
  return (
    <section className={styles.panel} data-testid="panel-namespaces" aria-label="Namespaces">
      <h3>Namespaces: which processes share which</h3>
      {p.types.map((t) => (
        <div key={t.type} className={styles.nsType} data-ns-type={t.type}>
          <span className={styles.nsName}>{t.type}</span>
          <span className={styles.groups}>
            {t.groups.map((g) => (
              <span
                key={g.inode}
                className={`${styles.group} ${g.sandbox ? styles.sandbox : styles.other}`}
                data-testid={`ns-group-${t.type}`}
              >
                <code>
                  {t.type}:[{g.inode}]
                </code>
                {g.sandbox ? ' (the sandbox)' : ''}
                {g.hostname ? ` · hostname ${g.hostname}` : ''}
                <span className={styles.procs}>{g.procs.map(procLabel).join(', ')}</span>
              </span>
            ))}
          </span>
        </div>
      ))}
    </section>
  );
}

function CpuChart({ p, history }: { p: CgroupCpuPanel; history: (number | null)[] }) {
  const W = 300;
  const H = 90;
  const top = Math.max(100, ...history.map((x) => x ?? 0));
  const y = (v: number) => H - (v / top) * H;
  // The newest sample at the right edge, older ones to its left (30 s across).
  const x = (i: number) => W - ((history.length - 1 - i) * W) / (HISTORY - 1);
  const pts = history
    .map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`))
    .filter(Boolean)
    .join(' ');
  const now = history.at(-1);
  return (
    <section className={styles.panel} data-testid="panel-cgroup-cpu" aria-label="CPU of a cgroup">
      <h3>
        CPU of <code>{p.group}</code>
        {p.version ? <span className="muted"> (cgroup {p.version})</span> : null}
      </h3>
      {!p.exists ? (
        <p className="muted">There is no group {p.group} yet.</p>
      ) : (
        <>
          <svg
            viewBox={`0 0 ${W} ${H}`}
            className={styles.chart}
            role="img"
            aria-label={`CPU use of ${p.group} over the last 30 seconds`}
          >
            <line x1="0" x2={W} y1={y(100)} y2={y(100)} className={styles.gridLine} />
            {typeof p.quotaPct === 'number' && (
              <line
                x1="0"
                x2={W}
                y1={y(p.quotaPct)}
                y2={y(p.quotaPct)}
                className={styles.quota}
                data-testid="quota-line"
              />
            )}
            <polyline points={pts} className={styles.usage} />
          </svg>
          <p className={styles.figures} data-testid="cpu-figures">
            now <strong data-testid="cpu-now">{typeof now === 'number' ? `${now}%` : '…'}</strong>{' '}
            of one CPU · quota{' '}
            {typeof p.quotaPct === 'number' ? `${p.quotaPct}%` : 'none (no limit)'} · throttled
            periods {p.throttled ?? 0} of {p.periods ?? 0} ·{' '}
            {(p.procs ?? []).map(procLabel).join(', ') || 'no process in it'}
          </p>
        </>
      )}
    </section>
  );
}

function entryLabel(e: OverlayEntry): string {
  if (e.type === 'whiteout') return `${e.path}  ✕ whiteout (c 0:0)`;
  if (e.type === 'dir') return `${e.path}/${e.opaque ? '  ◼ opaque' : ''}`;
  return `${e.path}${e.copiedUp ? '  ↑ copied up' : ''}${e.type === 'link' ? ' →' : ''}`;
}

function Overlay({ p }: { p: OverlayPanel }) {
  const cols: ['lower' | 'upper' | 'merged', string][] = [
    ['lower', 'lower (read-only)'],
    ['upper', 'upper (the changes)'],
    ['merged', p.mounted ? 'merged (mounted)' : 'merged (not mounted)'],
  ];
  return (
    <section className={styles.panel} data-testid="panel-overlay" aria-label="Overlay layers">
      <h3>Overlay layers</h3>
      <div className={styles.layers}>
        {cols.map(([k, title]) => {
          const list = p.layers[k];
          if (list === undefined) return null;
          return (
            <div key={k} className={styles.layer} data-layer={k}>
              <strong>{title}</strong>
              <ul>
                {list === null ? (
                  <li className="muted">missing</li>
                ) : list.length === 0 ? (
                  <li className="muted">empty</li>
                ) : (
                  list.map((e) => (
                    <li key={e.path} data-type={e.type} className={styles[e.type]}>
                      {entryLabel(e)}
                    </li>
                  ))
                )}
              </ul>
            </div>
          );
        })}
      </div>
    </section>
  );
}

function Capabilities({ p }: { p: CapabilitiesPanel }) {
  return (
    <section className={styles.panel} data-testid="panel-capabilities" aria-label="Capabilities">
      <h3>Capabilities</h3>
      <ul className={styles.caps}>
        {p.files.map((f) => (
          <li key={f.path}>
            <code>{f.path}</code>:{' '}
            {!f.exists
              ? 'no such file'
              : [
                  f.caps
                    ? `${f.caps.permitted.map((c) => `cap_${c}`).join(',') || '(none)'}=${f.caps.effective ? 'ep' : 'p'}${f.caps.rootid !== undefined ? ` [rootid=${f.caps.rootid}]` : ''}`
                    : 'no file capability',
                  f.setuid ? `setuid (owner uid ${f.uid})` : 'not setuid',
                ].join(' · ')}
          </li>
        ))}
        {p.processes.map((x) => (
          <li key={x.name}>
            process <code>{x.name}</code>
            {!x.found
              ? ': not running'
              : ` (${x.pid}): ${Object.entries(x.sets ?? {})
                  .map(([k, v]) => `${k} ${v.length >= 40 ? 'all' : v.join(',') || 'none'}`)
                  .join(' · ')}`}
          </li>
        ))}
      </ul>
    </section>
  );
}

/** One hue per peer group number, so that peers (and a slave's master) match across namespaces. */
function groupHue(tag: string): number | undefined {
  const n = /^(?:shared|master|propagate_from):(\d+)$/.exec(tag)?.[1];
  return n === undefined ? undefined : (Number(n) * 67) % 360;
}

function tagLabel(tag: string): string {
  if (tag.startsWith('master:')) return `slave of ${tag.slice(7)}`;
  return tag;
}

/** Depth of each mount below the topmost listed one, from the parent ids. */
function depths(mounts: MountEntry[]): Map<number, number> {
  const byId = new Map(mounts.map((m) => [m.id, m]));
  const out = new Map<number, number>();
  const depth = (m: MountEntry, seen = 0): number => {
    const known = out.get(m.id);
    if (known !== undefined) return known;
    const parent = byId.get(m.parent);
    const d = parent && parent !== m && seen < 64 ? depth(parent, seen + 1) + 1 : 0;
    out.set(m.id, d);
    return d;
  };
  mounts.forEach((m) => depth(m));
  return out;
}

function Mounts({ p }: { p: MountsPanel }) {
  return (
    <section className={styles.panel} data-testid="panel-mounts" aria-label="Mount namespaces">
      <h3>
        Mounts{' '}
        {p.under === '/' ? (
          ''
        ) : (
          <>
            under <code>{p.under}</code>{' '}
          </>
        )}
        per mount namespace
      </h3>
      <div className={styles.mntSpaces}>
        {p.namespaces.map((ns) => {
          const d = depths(ns.mounts);
          return (
            <div
              key={ns.inode}
              className={`${styles.mntSpace} ${ns.sandbox ? styles.sandbox : styles.other}`}
              data-testid="mnt-namespace"
              data-sandbox={ns.sandbox ? 'yes' : 'no'}
            >
              <strong>
                <code>mnt:[{ns.inode}]</code>
                {ns.sandbox ? ' (the sandbox)' : ''}
              </strong>
              <span className={styles.procs}>{ns.procs.map(procLabel).join(', ')}</span>
              <ul className={styles.mountList}>
                {ns.mounts.length === 0 ? (
                  <li className="muted">nothing mounted here</li>
                ) : (
                  ns.mounts.map((m) => (
                    <li
                      key={m.id}
                      style={{ paddingLeft: `${(d.get(m.id) ?? 0) * 0.9}rem` }}
                      data-target={m.target}
                      data-tags={m.tags.join(' ')}
                    >
                      <code>{m.target}</code>{' '}
                      <span className="muted">
                        {m.fstype} {m.source}
                        {m.root !== '/' ? ` [${m.root}]` : ''}
                        {m.ro ? ' ro' : ''}
                      </span>{' '}
                      {m.tags.length === 0 ? (
                        <span className={`${styles.tag} ${styles.tagPrivate}`}>private</span>
                      ) : (
                        m.tags.map((t) => {
                          const hue = groupHue(t);
                          return (
                            <span
                              key={t}
                              className={styles.tag}
                              style={
                                hue === undefined
                                  ? undefined
                                  : {
                                      borderColor: `hsl(${hue} 70% 50%)`,
                                      color: `light-dark(hsl(${hue} 70% 32%), hsl(${hue} 80% 72%))`,
                                    }
                              }
                            >
                              {tagLabel(t)}
                            </span>
                          );
                        })
                      )}
                    </li>
                  ))
                )}
                {ns.folded > 0 && (
                  <li className="muted">
                    + {ns.folded} more (below /proc and /sys
                    {ns.mounts.length >= 40 ? ', or past 40' : ''})
                  </li>
                )}
              </ul>
            </div>
          );
        })}
      </div>
    </section>
  );
}

'use client';
/** Two panes with a draggable (and keyboard-movable) divider; the width is remembered. */
import { Children, useRef, useState, type ReactNode } from 'react';
import { useStored, writeStored } from '../../lib/use-stored';
import styles from './split.module.css';

const clamp = (w: number) => Math.max(20, Math.min(80, w));

export function Split({ children, storageKey }: { children: ReactNode; storageKey: string }) {
  const [left, right] = Children.toArray(children);
  const stored = Number(useStored(storageKey));
  // While dragging the exact width; the remembered one is rounded.
  const [dragged, setDragged] = useState<number | null>(null);
  const width = dragged ?? (stored >= 20 && stored <= 80 ? stored : 46); // percent of the row
  const row = useRef<HTMLDivElement>(null);
  const set = (w: number) => {
    const c = clamp(w);
    setDragged(c);
    writeStored(storageKey, String(Math.round(c)));
  };
  const drag = (e: React.PointerEvent) => {
    const el = row.current;
    if (!el) return;
    (e.target as HTMLElement).setPointerCapture(e.pointerId);
    const move = (ev: PointerEvent) => {
      const r = el.getBoundingClientRect();
      set(((ev.clientX - r.left) / r.width) * 100);
    };
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  };
  return (
    <div className={styles.row} ref={row}>
      <div className={styles.pane} style={{ width: `${width}%` }}>
        {left}
      </div>
      <button
        className={styles.splitter}
        role="separator"
        aria-orientation="vertical"
        aria-valuenow={Math.round(width)}
        aria-valuemin={20}
        aria-valuemax={80}
        aria-label="Resize instructions and terminals (arrow keys)"
        onPointerDown={drag}
        onKeyDown={(e) => {
          if (e.key === 'ArrowLeft') set(width - 4);
          if (e.key === 'ArrowRight') set(width + 4);
        }}
      />
      {right}
    </div>
  );
}

'use client';
/** Two panes with a draggable (and keyboard-movable) divider; the width is remembered. */
import { Children, useEffect, useRef, useState, type ReactNode } from 'react';

export function Split({ children, storageKey }: { children: ReactNode; storageKey: string }) {
  const [left, right] = Children.toArray(children);
  const [width, setWidth] = useState(46); // percent of the row
  const row = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const w = Number(localStorage.getItem(storageKey));
    if (w >= 20 && w <= 80) setWidth(w);
  }, [storageKey]);
  const set = (w: number) => {
    const c = Math.max(20, Math.min(80, w));
    setWidth(c);
    localStorage.setItem(storageKey, String(Math.round(c)));
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
    <div className="lab-body" ref={row}>
      <div style={{ width: `${width}%`, display: 'flex', flexDirection: 'column', minHeight: 0 }}>
        {left}
      </div>
      <button
        className="splitter"
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

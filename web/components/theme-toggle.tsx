'use client';
/** Light / dark / system, remembered in localStorage (applied before paint by the layout's script). */
import { useEffect, useState } from 'react';

type Theme = 'system' | 'light' | 'dark';
const NEXT: Record<Theme, Theme> = { system: 'light', light: 'dark', dark: 'system' };

export function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>('system');
  useEffect(() => setTheme((localStorage.getItem('underlay.theme') as Theme) || 'system'), []);
  const change = () => {
    const t = NEXT[theme];
    setTheme(t);
    if (t === 'system') {
      localStorage.removeItem('underlay.theme');
      document.documentElement.removeAttribute('data-theme');
    } else {
      localStorage.setItem('underlay.theme', t);
      document.documentElement.setAttribute('data-theme', t);
    }
  };
  return (
    <button onClick={change} aria-label={`Theme: ${theme}. Change theme`} title="Change theme">
      {theme === 'dark' ? '☾ Dark' : theme === 'light' ? '☀ Light' : '◐ Auto'}
    </button>
  );
}

'use client';
/** Light / dark / system, remembered in localStorage (applied before paint by the layout's script). */
import { useStored, writeStored } from '../lib/use-stored';

type Theme = 'system' | 'light' | 'dark';
const NEXT: Record<Theme, Theme> = { system: 'light', light: 'dark', dark: 'system' };
const KEY = 'underlay.theme';

export function ThemeToggle() {
  const stored = useStored(KEY);
  const theme: Theme = stored === 'light' || stored === 'dark' ? stored : 'system';
  const change = () => {
    const t = NEXT[theme];
    if (t === 'system') {
      writeStored(KEY, null);
      document.documentElement.removeAttribute('data-theme');
    } else {
      writeStored(KEY, t);
      document.documentElement.setAttribute('data-theme', t);
    }
  };
  return (
    <button onClick={change} aria-label={`Theme: ${theme}. Change theme`} title="Change theme">
      {theme === 'dark' ? '☾ Dark' : theme === 'light' ? '☀ Light' : '◐ Auto'}
    </button>
  );
}

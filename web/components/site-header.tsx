import Link from 'next/link';
import type { ReactNode } from 'react';
import { ThemeToggle } from './theme-toggle';

export function SiteHeader({ children }: { children?: ReactNode }) {
  return (
    <header className="site-header">
      <Link href="/" className="brand" aria-label="Underlay: all labs">
        under<span>lay</span>
      </Link>
      {children}
      <span className="spacer" />
      <ThemeToggle />
    </header>
  );
}

import Link from 'next/link';
import type { ReactNode } from 'react';
import styles from './site-header.module.css';
import { ThemeToggle } from './theme-toggle';

export function SiteHeader({ tagline, children }: { tagline?: string; children?: ReactNode }) {
  return (
    <header className={styles.header}>
      <Link href="/" className={styles.brand} aria-label="Underlay: all labs">
        under<span>lay</span>
      </Link>
      {tagline && <span className={styles.tagline}>{tagline}</span>}
      {children}
      <span className={styles.spacer} />
      <ThemeToggle />
    </header>
  );
}

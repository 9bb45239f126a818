/**
 * A small shell highlighter for lab code blocks: commands, flags, strings,
 * variables and comments. Enough for the lab texts, no dependency.
 */
import type { ReactNode } from 'react';
import styles from './highlight.module.css';

const TOKEN =
  /(#[^\n]*)|('[^']*'|"(?:\\.|[^"\\])*")|(\$\{[^}]*\}|\$\(|\$[A-Za-z_?$!#@0-9][A-Za-z_0-9]*)|(\s--?[A-Za-z][\w-]*(?:=[^\s]*)?)|(^|[|;&(]\s*|\n\s*|\b(?:then|do|else)\s+)([A-Za-z_./][\w./+-]*)/gm;

export function highlightShell(code: string): ReactNode[] {
  const out: ReactNode[] = [];
  let last = 0;
  let k = 0;
  for (const m of code.matchAll(TOKEN)) {
    const i = m.index ?? 0;
    if (i > last) out.push(code.slice(last, i));
    if (m[1])
      out.push(
        <span key={k++} className={styles.com}>
          {m[1]}
        </span>,
      );
    else if (m[2])
      out.push(
        <span key={k++} className={styles.str}>
          {m[2]}
        </span>,
      );
    else if (m[3])
      out.push(
        <span key={k++} className={styles.var}>
          {m[3]}
        </span>,
      );
    else if (m[4])
      out.push(
        <span key={k++} className={styles.flag}>
          {m[4]}
        </span>,
      );
    else {
      out.push(m[5] ?? '');
      out.push(
        <span key={k++} className={styles.cmd}>
          {m[6]}
        </span>,
      );
    }
    last = i + m[0].length;
  }
  if (last < code.length) out.push(code.slice(last));
  return out;
}

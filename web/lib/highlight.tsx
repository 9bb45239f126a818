/**
 * A small shell highlighter for lab code blocks: commands, flags, strings,
 * variables and comments. Enough for the lab texts, no dependency.
 */
import type { ReactNode } from 'react';
import styles from './highlight.module.css';

const TOKEN =
  /(#[^\n]*)|('[^']*'|"(?:\\.|[^"\\])*")|(\$\{[^}]*\}|\$\(|\$[A-Za-z_?$!#@0-9][A-Za-z_0-9]*)|(\s--?[A-Za-z][\w-]*(?:=[^\s]*)?)|(^|[|;&(]\s*|\n\s*|\b(?:then|do|else)\s+)([A-Za-z_./][\w./+-]*)/gm;

/** The class of each whole-token group of TOKEN: comment, string, variable, flag. */
const CLASSES: Record<number, string | undefined> = {
  1: styles.com,
  2: styles.str,
  3: styles.var,
  4: styles.flag,
};

export function highlightShell(code: string): ReactNode[] {
  const out: ReactNode[] = [];
  let last = 0;
  let k = 0;
  for (const m of code.matchAll(TOKEN)) {
    const i = m.index ?? 0;
    if (i > last) out.push(code.slice(last, i));
    // Groups 1-4 are whole tokens; 5 is what precedes a command (kept plain), 6 the command.
    const group = [1, 2, 3, 4].find((g) => m[g]);
    if (group === undefined) out.push(m[5] ?? '');
    const [text, cls] = group === undefined ? [m[6], styles.cmd] : [m[group], CLASSES[group]];
    out.push(
      <span key={k++} className={cls}>
        {text}
      </span>,
    );
    last = i + m[0].length;
  }
  if (last < code.length) out.push(code.slice(last));
  return out;
}

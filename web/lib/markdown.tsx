'use client';
/**
 * Lab markdown: marked's lexer, rendered to React so that ```sh blocks get
 * Run (typed into the named terminal) and Copy buttons. Lab texts come from
 * the instructor's files on the server, not from students.
 */
import { marked, type Token, type Tokens } from 'marked';
import { useState, type ReactNode } from 'react';
import { highlightShell } from './highlight';
import styles from './markdown.module.css';

export interface RunTarget {
  /** Types the code into terminal `terminal`; absent when no terminal is ready. */
  run?: (terminal: string, code: string) => void;
  defaultTerminal: string;
}

function CodeBlock({ token, target }: { token: Tokens.Code; target: RunTarget | undefined }) {
  const [copied, setCopied] = useState(false);
  const [lang = '', ...info] = (token.lang ?? '').split(/\s+/);
  // Same rule as `underlay test --walkthrough` (server/labs/walkthrough.ts).
  const shell = ['sh', 'bash', 'shell', 'console'].includes(lang) && !info.includes('norun');
  const terminal =
    /\bterminal=([\w-]+)/.exec(info.join(' '))?.[1] ?? target?.defaultTerminal ?? 'T1';
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(token.text);
    } catch {
      // Clipboard API needs a secure context; fall back to a selection copy.
      const ta = document.createElement('textarea');
      ta.value = token.text;
      document.body.appendChild(ta);
      ta.select();
      document.execCommand('copy');
      ta.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 1200);
  };
  return (
    <div className={styles.codeblock} data-terminal={shell ? terminal : undefined}>
      {shell && (
        <div className={styles.actions}>
          <span className={styles.where}>in {terminal}</span>
          <button
            className="small"
            onClick={() => target?.run?.(terminal, token.text)}
            disabled={!target?.run}
            aria-label={`Run in ${terminal}`}
            title={`Type this into ${terminal}`}
          >
            ▶ Run
          </button>
          <button className="small" onClick={() => void copy()} aria-label="Copy code">
            {copied ? 'Copied' : 'Copy'}
          </button>
        </div>
      )}
      <pre>
        <code>{shell ? highlightShell(token.text) : token.text}</code>
      </pre>
    </div>
  );
}

function inline(text: string): { __html: string } {
  return { __html: marked.parseInline(text, { async: false }) as string };
}

function render(tokens: Token[], target: RunTarget | undefined): ReactNode[] {
  return tokens.map((t, i) => {
    switch (t.type) {
      case 'code':
        return <CodeBlock key={i} token={t as Tokens.Code} target={target} />;
      case 'list': {
        const l = t as Tokens.List;
        const items = l.items.map((it, j) => <li key={j}>{render(it.tokens, target)}</li>);
        return l.ordered ? <ol key={i}>{items}</ol> : <ul key={i}>{items}</ul>;
      }
      case 'text': {
        const tx = t as Tokens.Text;
        return <span key={i} dangerouslySetInnerHTML={inline(tx.text)} />;
      }
      case 'space':
        return null;
      default:
        return <div key={i} dangerouslySetInnerHTML={{ __html: marked.parser([t]) }} />;
    }
  });
}

export function Markdown({ text, target }: { text: string; target?: RunTarget }) {
  return <div className={styles.prose}>{render(marked.lexer(text), target)}</div>;
}

'use client';
/**
 * Lab markdown: marked's lexer, rendered to React so that ```sh blocks get
 * Run (typed into the named terminal) and Copy buttons.
 *
 * Everything is rendered as untrusted: besides the instructor's files,
 * hints and messages come from scripts that read sandbox state a student
 * controls (a hostname can be `<img src=x onerror=...>`). So raw HTML is
 * shown as text, links keep to http(s)/mailto/relative targets and open
 * without a referrer, and images load only from this server.
 */
import { Marked, type Token, type Tokens } from 'marked';
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

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Relative, same-server, http(s) or mailto: never javascript:, data: or vbscript:. */
function safeHref(href: string): boolean {
  const h = href.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(h)?.[1]?.toLowerCase();
  // No scheme: relative, unless it starts with a control character or a
  // space (browsers strip those and may then find a scheme after all).
  if (scheme === undefined) return h.length > 0 && h.charCodeAt(0) > 0x20;
  return ['http', 'https', 'mailto'].includes(scheme);
}

const marked = new Marked({
  async: false,
  renderer: {
    html({ text }) {
      return escapeHtml(text);
    },
    link({ href, title, tokens }) {
      const body = this.parser.parseInline(tokens);
      if (!safeHref(href)) return body;
      const t = title ? ` title="${escapeHtml(title)}"` : '';
      const external = /^(https?:|mailto:|\/\/)/i.test(href.trim());
      return `<a href="${escapeHtml(href.trim())}"${t}${external ? ' rel="noopener noreferrer nofollow" target="_blank"' : ''}>${body}</a>`;
    },
    image({ href, text }) {
      // Another host's image would tell it who reads this page, and when.
      if (/^([a-z][a-z0-9+.-]*:|\/\/)/i.test(href.trim())) return escapeHtml(text);
      return `<img src="${escapeHtml(href.trim())}" alt="${escapeHtml(text)}">`;
    },
  },
});

function inline(text: string): { __html: string } {
  return { __html: marked.parseInline(text) as string };
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
        return <div key={i} dangerouslySetInnerHTML={{ __html: marked.parser([t]) as string }} />;
    }
  });
}

export function Markdown({ text, target }: { text: string; target?: RunTarget }) {
  return <div className={styles.prose}>{render(marked.lexer(text), target)}</div>;
}

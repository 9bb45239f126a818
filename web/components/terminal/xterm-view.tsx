'use client';
/**
 * One xterm.js terminal bound to a RemoteTerminal. Client-only (touches
 * window): loaded with next/dynamic({ ssr: false }) by terminal-tabs.tsx.
 * Its colours are the palette's --term-* variables (app/globals.css).
 */
import { FitAddon } from '@xterm/addon-fit';
import { Unicode11Addon } from '@xterm/addon-unicode11';
import { WebLinksAddon } from '@xterm/addon-web-links';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useEffectEvent, useRef } from 'react';
import type { RemoteTerminal, SessionClient } from '../../lib/terminal-client';
import styles from './xterm-view.module.css';

export interface XtermViewProps {
  client: SessionClient;
  /** Re-attach to this terminal id (after a reload) instead of opening a new one. */
  termId?: string | undefined;
  /** The name of a new terminal (T2, ...). */
  name?: string | undefined;
  active: boolean;
  /** xterm.js's screen-reader mode: rows mirrored as text for assistive technology. */
  screenReader?: boolean;
  /**
   * An instructor's view: no input, and the size is the student's pty's
   * (followed as it changes), not this box's.
   */
  readOnly?: boolean;
  onOpened: (t: RemoteTerminal) => void;
  onError: (message: string) => void;
  onExit?: (code: number) => void;
}

export default function XtermView({
  client,
  termId,
  name,
  active,
  screenReader = false,
  readOnly = false,
  onOpened,
  onError,
  onExit,
}: XtermViewProps) {
  const box = useRef<HTMLDivElement>(null);
  const fitRef = useRef<FitAddon | null>(null);
  const xtermRef = useRef<Terminal | null>(null);
  const remoteRef = useRef<RemoteTerminal | null>(null);
  // Callbacks from the parent: the latest ones, without reopening the terminal when they change.
  const opened = useEffectEvent((t: RemoteTerminal) => onOpened(t));
  const failed = useEffectEvent((message: string) => onError(message));
  const exited = useEffectEvent((code: number) => onExit?.(code));

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const palette = getComputedStyle(el);
    const color = (name: string) => palette.getPropertyValue(name).trim();
    const term = new Terminal({
      scrollback: 1000,
      cursorBlink: true,
      allowProposedApi: true,
      disableStdin: readOnly,
      cursorInactiveStyle: readOnly ? 'none' : 'outline',
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', 'Liberation Mono', monospace",
      fontSize: 14,
      // At 1.0 the cell is as tall as the font's ascent + descent rounded
      // down, and at device pixel ratio 1 the underscore's row falls outside
      // it: `cpu.cfs_quota_us` read "cpu.cfs quota us" (test/e2e/terminal.test.ts).
      lineHeight: 1.2,
      // A paste behaves as typing, as the Run buttons do: its newlines run
      // the lines. With bash's bracketed paste the pasted text only waited,
      // highlighted, for another Enter (a 100 KB paste looked stuck, with no
      // prompt). docs/terminals.md.
      ignoreBracketedPasteMode: true,
      // Hyperlinks a program prints (OSC 8) open only if they are http(s): what a
      // sandbox prints is the student's (and on the instructor's page, someone else's).
      linkHandler: {
        activate: (_e, uri) => {
          if (/^https?:\/\//i.test(uri)) window.open(uri, '_blank', 'noopener,noreferrer');
        },
      },
      theme: {
        background: color('--term-bg'),
        foreground: color('--term-fg'),
        cursor: color('--term-fg'),
        selectionBackground: color('--term-selection'),
      },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.loadAddon(new WebLinksAddon());
    term.loadAddon(new Unicode11Addon());
    term.unicode.activeVersion = '11';
    term.open(el);
    if (!readOnly) fit.fit();
    fitRef.current = fit;
    xtermRef.current = term;
    // Copy with Ctrl+Shift+C (Ctrl+C stays an interrupt); paste is the browser's own.
    // Tab and Esc belong to the shell (completion, vi), so the way out for
    // keyboard users is Ctrl+Shift+E: focus moves to this terminal's tab, and
    // Tab / Shift+Tab go on from there (to Check, Run, the other tabs).
    term.attachCustomKeyEventHandler((e) => {
      if (e.type === 'keydown' && e.ctrlKey && e.shiftKey && e.code === 'KeyC') {
        void navigator.clipboard?.writeText(term.getSelection());
        return false;
      }
      if (e.ctrlKey && e.shiftKey && e.code === 'KeyE') {
        if (e.type === 'keydown') {
          const root = el.closest('[data-terminal-root]');
          const tab = root?.querySelector<HTMLElement>('[role="tab"][aria-selected="true"]');
          term.blur();
          tab?.focus();
        }
        return false;
      }
      return true;
    });
    let remote: RemoteTerminal | undefined;
    let disposed = false;
    const view = {
      write: (d: string, cb: () => void) => term.write(d, cb),
      reset: () => term.reset(),
      resize: (cols: number, rows: number) => {
        if (readOnly) term.resize(cols, rows);
      },
    };
    // A tab mounted hidden cannot measure itself (xterm's 80x24 would shrink
    // the student's shell): it attaches without a size and sends its own once
    // shown. A read-only view never sends one.
    const measured = !readOnly && el.offsetParent !== null;
    client
      .open(view, {
        ...(termId ? { term: termId } : {}),
        ...(name ? { name } : {}),
        ...(measured || !termId ? { cols: term.cols, rows: term.rows } : {}),
      })
      .then((t) => {
        if (disposed) return client.forget(t);
        remote = t;
        remoteRef.current = t;
        opened(t);
        if (readOnly) return;
        term.onData((d) => void t.input(d));
        term.onResize(({ cols, rows }) => t.resize(cols, rows));
        t.onExit = (code) => {
          term.write(`\r\n\x1b[2m[shell exited with status ${code}]\x1b[0m\r\n`);
          exited(code);
        };
      })
      .catch((err: Error) => failed(err.message));
    const ro = new ResizeObserver(() => {
      if (readOnly || el.offsetParent === null) return;
      fit.fit();
      // Also when fit left xterm's size as it was (no onResize) but the pty differs.
      remoteRef.current?.resize(term.cols, term.rows);
    });
    ro.observe(el);
    return () => {
      disposed = true;
      ro.disconnect();
      term.dispose();
      remoteRef.current = null;
      if (remote) client.forget(remote);
    };
  }, [client, termId, name, readOnly]);

  useEffect(() => {
    if (active && !readOnly) {
      fitRef.current?.fit();
      const x = xtermRef.current;
      // Shown for the first time since it attached unmeasured: the pty takes this size now.
      if (x) remoteRef.current?.resize(x.cols, x.rows);
      x?.focus();
    }
  }, [active, readOnly]);

  useEffect(() => {
    if (xtermRef.current) xtermRef.current.options.screenReaderMode = screenReader;
  }, [screenReader, client, termId, name]);

  return <div ref={box} data-testid="xterm" className={readOnly ? styles.natural : styles.view} />;
}

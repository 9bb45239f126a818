/**
 * Values kept in the browser's localStorage or sessionStorage, read with
 * useSyncExternalStore: `undefined` on the server and while hydrating (so the
 * first render matches the server's HTML), the stored string (or null) from
 * then on. Writes go through this module so that every reader in the page
 * re-renders; the `storage` event brings changes made in other tabs.
 */
import { useMemo, useSyncExternalStore } from 'react';

export type StorageArea = 'local' | 'session';

const listeners = new Set<() => void>();
/** Values the browser refused to store (storage disabled or full): kept for this page only. */
const unsaved = new Map<string, string | null>();

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  window.addEventListener('storage', listener);
  return () => {
    listeners.delete(listener);
    window.removeEventListener('storage', listener);
  };
}

function storage(area: StorageArea): Storage {
  return area === 'local' ? localStorage : sessionStorage;
}

function read(area: StorageArea, key: string): string | null {
  const kept = unsaved.get(`${area}:${key}`);
  if (kept !== undefined) return kept;
  try {
    return storage(area).getItem(key);
  } catch {
    return null;
  }
}

function write(area: StorageArea, key: string, value: string | null): void {
  try {
    if (value === null) storage(area).removeItem(key);
    else storage(area).setItem(key, value);
    unsaved.delete(`${area}:${key}`);
  } catch {
    unsaved.set(`${area}:${key}`, value);
  }
}

function changed(): void {
  for (const l of listeners) l();
}

/** The string stored under `key`; `undefined` until the page has hydrated. */
export function useStored(key: string, area: StorageArea = 'local'): string | null | undefined {
  return useSyncExternalStore(
    subscribe,
    () => read(area, key),
    () => undefined,
  );
}

/** Stores `value` under `key` (null removes it). */
export function writeStored(key: string, value: string | null, area: StorageArea = 'local'): void {
  write(area, key, value);
  changed();
}

/** Removes every key that starts with `prefix`. */
export function removeStored(prefix: string, area: StorageArea = 'local'): void {
  let keys: string[] = [];
  try {
    keys = Object.keys(storage(area));
  } catch {
    // No storage: only the unsaved values below.
  }
  for (const k of unsaved.keys()) if (k.startsWith(`${area}:`)) keys.push(k.slice(area.length + 1));
  for (const k of keys) if (k.startsWith(prefix)) write(area, k, null);
  changed();
}

/** A JSON value under `key`, `initial` when absent or unreadable, with its setter. */
export function useStoredJson<T>(
  key: string,
  initial: T,
  area: StorageArea = 'local',
): [T, (value: T) => void] {
  const raw = useStored(key, area);
  const parsed = useMemo(() => {
    if (raw == null) return undefined;
    try {
      return { value: JSON.parse(raw) as T };
    } catch {
      return undefined;
    }
  }, [raw]);
  return [parsed ? parsed.value : initial, (v: T) => writeStored(key, JSON.stringify(v), area)];
}

// Small hooks the views share.
import { useEffect, useReducer, useState } from 'preact/hooks';
import type { JobStore } from './store.ts';

/** Re-renders after every change of the store (which batches its events). */
export function useStore(store: JobStore): number {
  const [, bump] = useReducer((n: number) => n + 1, 0);
  useEffect(() => store.subscribe(() => bump(0)), [store]);
  return store.version;
}

/** The current time, renewed every `ms`. */
export function useNow(ms: number): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** The route, from the location's hash: `#/` (the list) or `#/jobs/<id>` (a job). */
export type Route = { page: 'list' } | { page: 'job'; id: string };

export function routeOf(hash: string): Route {
  const match = /^#\/jobs\/(.+)$/.exec(hash);
  if (!match) return { page: 'list' };
  try {
    return { page: 'job', id: decodeURIComponent(match[1]!) };
  } catch {
    return { page: 'list' };
  }
}

export const jobHref = (id: string): string => `#/jobs/${encodeURIComponent(id)}`;

export function useRoute(): Route {
  const [hash, setHash] = useState(() => location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return routeOf(hash);
}

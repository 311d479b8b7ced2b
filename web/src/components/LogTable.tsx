// A job's log entries, newest first, with a level filter (SPEC §11). New entries come from the
// `logEntryAdded` subscription; while updates are paused they wait, like the rest of the page.
import { useEffect, useRef, useState } from 'preact/hooks';
import { type Api, ApiError } from '../api.ts';
import { JOB_LOG, LOG_ADDED } from '../documents.ts';
import { formatMoment } from '../format.ts';
import { useStore } from '../hooks.ts';
import { t } from '../i18n.ts';
import { LEVELS, type LogEntry, type LogLevel } from '../model.ts';
import type { JobStore } from '../store.ts';

interface LogPage {
  logEntries: { edges: { node: LogEntry }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
}

/** Newest first, by time then id; an entry already shown is not shown twice. */
const withEntries = (shown: LogEntry[], added: LogEntry[]): LogEntry[] => {
  const ids = new Set(shown.map((entry) => entry.id));
  const fresh = added.filter((entry) => !ids.has(entry.id));
  if (fresh.length === 0) return shown;
  return [...fresh, ...shown].sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || b.id.length - a.id.length || (b.id > a.id ? 1 : -1));
};

export function LogTable({ api, store, jobId }: { api: Api; store: JobStore; jobId: string }) {
  useStore(store);
  const [level, setLevel] = useState<LogLevel | ''>('');
  const [entries, setEntries] = useState<LogEntry[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const waiting = useRef<LogEntry[]>([]);

  const read = async (after: string | null) => {
    try {
      const { logEntries } = await api.request<LogPage>(JOB_LOG, { jobId, level: level || null, after });
      const page = logEntries.edges.map((edge) => edge.node);
      setEntries((shown) => (after === null ? page : withEntries(shown ?? [], page)));
      setNext(logEntries.pageInfo.hasNextPage ? logEntries.pageInfo.endCursor : null);
      setError(null);
    } catch (thrown) {
      setError(thrown instanceof ApiError ? thrown.message : String(thrown));
    }
  };

  useEffect(() => {
    setEntries(null);
    waiting.current = [];
    void read(null);
    const unsubscribe = api.subscribe<{ logEntryAdded: LogEntry }>(
      LOG_ADDED,
      { jobId },
      {
        next: ({ logEntryAdded: entry }) => {
          if (level !== '' && entry.level !== level) return;
          if (store.held) waiting.current.push(entry);
          else setEntries((shown) => (shown ? withEntries(shown, [entry]) : shown));
        },
        interrupted: () => void read(null),
      },
    );
    const offRefresh = store.onRefresh(() => void read(null));
    return () => {
      unsubscribe();
      offRefresh();
    };
  }, [api, store, jobId, level]);

  // Entries that waited while updates were paused.
  useEffect(() => {
    if (store.held || waiting.current.length === 0) return;
    const added = waiting.current;
    waiting.current = [];
    setEntries((shown) => (shown ? withEntries(shown, added) : shown));
  }, [store.held]);

  return (
    <section aria-labelledby="log">
      <h2 id="log">{t.log}</h2>
      <label class="field inline">
        <span>{t.level}</span>
        <select value={level} onChange={(event) => setLevel(event.currentTarget.value as LogLevel | '')}>
          <option value="">{t.all}</option>
          {LEVELS.map((value) => (
            <option key={value} value={value}>
              {t.levels[value]}
            </option>
          ))}
        </select>
      </label>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {entries === null ? (
        <p>{t.loading}</p>
      ) : entries.length === 0 ? (
        <p>{t.noEntries}</p>
      ) : (
        <table class="log" aria-label={t.log}>
          <thead>
            <tr>
              <th scope="col">{t.at}</th>
              <th scope="col">{t.level}</th>
              <th scope="col">{t.message}</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((entry) => (
              <tr key={entry.id} class={`level-${entry.level.toLowerCase()}`}>
                <td>
                  <time dateTime={entry.at}>{formatMoment(entry.at)}</time>
                </td>
                <td>{t.levels[entry.level]}</td>
                <td class="log-message" title={entry.details ? JSON.stringify(entry.details) : undefined}>
                  {entry.message}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next !== null && (
        <button type="button" onClick={() => void read(next)}>
          {t.more}
        </button>
      )}
    </section>
  );
}

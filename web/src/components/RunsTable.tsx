// A job's runs, newest first (SPEC §11): status, due time, lateness, duration, attempt, instance
// and error. New runs and run ends come from the live events; a reconnection reads the page again.
import { useEffect, useState } from 'preact/hooks';
import { type Api, ApiError } from '../api.ts';
import { JOB_RUNS } from '../documents.ts';
import { formatDuration, formatMoment } from '../format.ts';
import { t } from '../i18n.ts';
import { latenessMs, outcomeOf, type Run, withRun } from '../model.ts';
import type { JobStore } from '../store.ts';

interface RunsPage {
  runs: { edges: { node: Run }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
}

export function RunsTable({ api, store, jobId }: { api: Api; store: JobStore; jobId: string }) {
  const [runs, setRuns] = useState<Run[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const read = async (after: string | null) => {
    try {
      const { runs: page } = await api.request<RunsPage>(JOB_RUNS, { jobId, after });
      const read = page.edges.map((edge) => edge.node);
      setRuns((shown) => (after === null ? read : [...(shown ?? []), ...read].reduce<Run[]>((list, run) => withRun(list, run), [])));
      setNext(page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null);
      setError(null);
    } catch (thrown) {
      setError(thrown instanceof ApiError ? thrown.message : String(thrown));
    }
  };

  useEffect(() => {
    setRuns(null);
    void read(null);
    const offEvent = store.onEvent((event) => {
      const { run } = event;
      if (run && run.jobId === jobId) setRuns((shown) => (shown ? withRun(shown, run) : shown));
    });
    const offRefresh = store.onRefresh(() => void read(null));
    return () => {
      offEvent();
      offRefresh();
    };
  }, [api, store, jobId]);

  return (
    <section aria-labelledby="runs">
      <h2 id="runs">{t.runs}</h2>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      {runs === null ? (
        <p>{t.loading}</p>
      ) : runs.length === 0 ? (
        <p>{t.noRuns}</p>
      ) : (
        <table class="runs" aria-label={t.runs}>
          <thead>
            <tr>
              <th scope="col">{t.status}</th>
              <th scope="col">{t.due}</th>
              <th scope="col">{t.lateness}</th>
              <th scope="col">{t.duration}</th>
              <th scope="col">{t.attempt}</th>
              <th scope="col">{t.instance}</th>
              <th scope="col">{t.error}</th>
            </tr>
          </thead>
          <tbody>
            {runs.map((run) => (
              <tr key={run.id} class={`run-${outcomeOf(run.status)}`}>
                <td>
                  <span class={`status status-${outcomeOf(run.status)}`}>{t.statuses[run.status]}</span>
                  {run.trigger !== 'SCHEDULE' && <small> · {run.trigger.toLowerCase()}</small>}
                  {run.missed > 0 && <small> · {t.missed(run.missed)}</small>}
                </td>
                <td>
                  <time dateTime={run.scheduledAt}>{formatMoment(run.scheduledAt)}</time>
                </td>
                <td>{formatDuration(latenessMs(run))}</td>
                <td>{formatDuration(run.durationMs)}</td>
                <td>{run.attempt}</td>
                <td>{run.instance ?? '—'}</td>
                <td class="run-error">{run.error ?? ''}</td>
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

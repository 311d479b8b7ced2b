// A job (SPEC §11): its state, controls, definition and next due times, then its runs and its
// log entries, each kept current by the live events and read again after a reconnection.
import { useEffect, useState } from 'preact/hooks';
import { type Api, ApiError } from '../api.ts';
import { JOB } from '../documents.ts';
import { formatMoment } from '../format.ts';
import { useNow, useStore } from '../hooks.ts';
import { t } from '../i18n.ts';
import { type JobDetails, scheduleOf, stateOf } from '../model.ts';
import type { JobStore } from '../store.ts';
import { Badge } from './Badge.tsx';
import { JobActions } from './JobActions.tsx';
import { LogTable } from './LogTable.tsx';
import { RunsTable } from './RunsTable.tsx';

export function JobPage({ api, store, id, canOperate }: { api: Api; store: JobStore; id: string; canOperate: boolean }) {
  useStore(store);
  const now = useNow(1000);
  const [details, setDetails] = useState<JobDetails | null>(null);
  const [missing, setMissing] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  // The definition and next due times: read at once, and again (debounced) after each event of the job.
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let stale = false;
    const read = async () => {
      try {
        const { job } = await api.request<{ job: JobDetails | null }>(JOB, { id });
        if (stale) return;
        setMissing(job === null);
        setDetails(job);
        setError(null);
      } catch (thrown) {
        if (!stale) setError(thrown instanceof ApiError ? thrown.message : String(thrown));
      }
    };
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(() => void read(), 300);
    };
    void read();
    const offEvent = store.onEvent((event) => event.jobId === id && later());
    const offRefresh = store.onRefresh(later);
    return () => {
      stale = true;
      clearTimeout(timer);
      offEvent();
      offRefresh();
    };
  }, [api, store, id]);

  const live = store.jobs.get(id);
  const job = live ?? details;
  if (!job) {
    return (
      <main class="job-page">
        <a href="#/">← {t.back}</a>
        <p role={missing ? 'alert' : 'status'}>{missing ? t.notFound(id) : (error ?? t.loading)}</p>
      </main>
    );
  }
  const state = stateOf(job, store.isRunning(id));
  const shown = details && live ? { ...details, ...live } : details;

  return (
    <main class="job-page">
      <a href="#/">← {t.back}</a>
      <header class="job-head">
        <h1>{job.id}</h1>
        <Badge state={state} />
        <span class="job-name">{job.name}</span>
      </header>
      {job.pausedNote && (
        <p class="note">
          {t.pausedNote}: {job.pausedNote}
        </p>
      )}
      {canOperate && live && (
        <JobActions
          api={api}
          store={store}
          job={live}
          details={shown}
          onDone={(text) => {
            setMessage(text);
            setTimeout(() => setMessage(null), 4000);
          }}
        />
      )}
      <p role="status" class="message">
        {message}
      </p>
      {error !== null && (
        <p role="alert" class="error">
          {error}
        </p>
      )}
      <div class="job-grid">
        <section aria-labelledby="definition">
          <h2 id="definition">{t.definition}</h2>
          {shown ? <Definition job={shown} now={now} /> : <p>{t.loading}</p>}
        </section>
        <section aria-labelledby="next-runs">
          <h2 id="next-runs">{t.nextRuns}</h2>
          {shown && shown.nextRuns.length > 0 ? (
            <ol class="next-runs">
              {shown.nextRuns.map((run) => (
                <li key={run.at}>
                  <time dateTime={run.at} title={run.localTime}>
                    {formatMoment(run.at, now)}
                  </time>
                  {run.dst && <small> · {t.dst[run.dst] ?? run.dst}</small>}
                </li>
              ))}
            </ol>
          ) : (
            <p>{shown ? t.ended : t.loading}</p>
          )}
        </section>
      </div>
      <RunsTable api={api} store={store} jobId={id} />
      <LogTable api={api} store={store} jobId={id} />
    </main>
  );
}

function Definition({ job, now }: { job: JobDetails; now: number }) {
  const rows: [string, string][] = [
    [t.name, job.name],
    [t.externalCall, job.externalCall],
    [t.schedule, scheduleOf(job)],
    [t.next, job.enabled ? formatMoment(job.nextRunAt, now) : t.never],
    [t.timeout, String(job.timeoutSeconds)],
    [t.overlap, job.overlap],
    [t.misfire, job.misfire],
    [t.retry, t.retryText(job.retry.maxAttempts, job.retry.backoffSeconds, job.retry.backoffFactor, job.retry.maxBackoffSeconds)],
    [t.autoPause, job.autoPauseAfterFailures === null ? t.never : String(job.autoPauseAfterFailures)],
    [t.consecutiveFailures, String(job.consecutiveFailures)],
    [t.endAt, job.endAt === null ? t.never : formatMoment(job.endAt, now)],
    [t.created, formatMoment(job.createdAt, now)],
    [t.updated, formatMoment(job.updatedAt, now)],
  ];
  return (
    <dl class="definition">
      {rows.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

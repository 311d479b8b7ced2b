// The jobs (SPEC §11): search by id, name or call; filters `State` and `Connector`; a sort; a
// virtualised table whose rows each hold the job's id (a link to its page), its state badge,
// name, schedule, next due time and strip of recent outcomes; `Pause all` / `Resume all` over
// what the filter shows.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Api } from '../api.ts';
import { PAUSE_MANY, RESUME_MANY } from '../documents.ts';
import { formatIn, formatMoment } from '../format.ts';
import { jobHref, useNow, useStore } from '../hooks.ts';
import { t } from '../i18n.ts';
import { type Job, type JobState, type ListQuery, scheduleOf, SORTS, type SortKey, STATES, stateOf, visibleJobs } from '../model.ts';
import type { JobStore } from '../store.ts';
import { useVirtualizer } from '../virtual.ts';
import { Badge, Strip } from './Badge.tsx';
import { Dialog, NoteField } from './Dialog.tsx';

const ROW_HEIGHT = 40;

export interface JobListProps {
  api: Api;
  store: JobStore;
  query: ListQuery;
  onQuery: (query: ListQuery) => void;
  canOperate: boolean;
  connectors: readonly string[];
}

export function JobList({ api, store, query, onQuery, canOperate, connectors }: JobListProps) {
  const version = useStore(store);
  const now = useNow(1000);
  const shown = useMemo(() => visibleJobs(store.jobs.values(), store.isRunning, query), [version, query]);
  const connectorIds = useMemo(
    () => [...new Set([...connectors, ...[...store.jobs.values()].map((job) => job.connectorId)])].sort(),
    [version, connectors],
  );
  const [bulk, setBulk] = useState<'pause' | 'resume' | null>(null);
  const set = (change: Partial<ListQuery>) => onQuery({ ...query, ...change });

  const scroller = useRef<HTMLDivElement>(null);
  const virtualizer = useVirtualizer({
    count: shown.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 10,
    getItemKey: (index) => shown[index]?.id ?? index,
  });
  const items = virtualizer.getVirtualItems();

  // The strips of the rows on screen, once scrolling settles.
  const onScreen = items.map((item) => shown[item.index]?.id).filter((id): id is string => id !== undefined);
  const key = onScreen.join('\n');
  useEffect(() => {
    const timer = setTimeout(() => store.wantStrips(onScreen), 100);
    return () => clearTimeout(timer);
  }, [key, version]);

  return (
    <main class="list-page">
      <div class="toolbar" role="search">
        <label class="field grow">
          <span>{t.search}</span>
          <input
            type="search"
            value={query.search}
            placeholder={t.searchPlaceholder}
            onInput={(event) => set({ search: event.currentTarget.value })}
          />
        </label>
        <label class="field">
          <span>{t.state}</span>
          <select value={query.state} onChange={(event) => set({ state: event.currentTarget.value as JobState | '' })}>
            <option value="">{t.all}</option>
            {STATES.map((state) => (
              <option key={state} value={state}>
                {t.states[state]}
              </option>
            ))}
          </select>
        </label>
        <label class="field">
          <span>{t.connector}</span>
          <select value={query.connector} onChange={(event) => set({ connector: event.currentTarget.value })}>
            <option value="">{t.all}</option>
            {connectorIds.map((id) => (
              <option key={id} value={id}>
                {id}
              </option>
            ))}
          </select>
        </label>
        <label class="field">
          <span>{t.sort}</span>
          <select value={query.sort} onChange={(event) => set({ sort: event.currentTarget.value as SortKey })}>
            {SORTS.map((sort) => (
              <option key={sort} value={sort}>
                {t.sorts[sort]}
              </option>
            ))}
          </select>
        </label>
        {canOperate && (
          <div class="bulk">
            <button type="button" onClick={() => setBulk('pause')} disabled={shown.length === 0}>
              {t.pauseAll}
            </button>
            <button type="button" onClick={() => setBulk('resume')} disabled={shown.length === 0}>
              {t.resumeAll}
            </button>
          </div>
        )}
      </div>
      <p class="count" role="status">
        {store.loaded ? t.shown(shown.length, store.jobs.size) : (store.error ?? t.loading)}
      </p>
      <div class="jobs" role="table" aria-label={t.jobs} aria-rowcount={shown.length + 1}>
        <div role="rowgroup" class="jobs-head">
          <div role="row" class="job-row" aria-rowindex={1}>
            <span role="columnheader">{t.id}</span>
            <span role="columnheader">{t.state}</span>
            <span role="columnheader">{t.name}</span>
            <span role="columnheader">{t.schedule}</span>
            <span role="columnheader">{t.next}</span>
            <span role="columnheader">{t.recent}</span>
          </div>
        </div>
        <div class="jobs-body" ref={scroller} role="rowgroup">
          {store.loaded && shown.length === 0 && <p class="empty">{t.noJobs}</p>}
          <div style={{ height: `${virtualizer.getTotalSize()}px`, position: 'relative' }}>
            {items.map((item) => {
              const job = shown[item.index]!;
              return <JobRow key={job.id} job={job} store={store} index={item.index} top={item.start} now={now} />;
            })}
          </div>
        </div>
      </div>
      {bulk !== null && <BulkDialog api={api} store={store} kind={bulk} jobs={shown} onClose={() => setBulk(null)} />}
    </main>
  );
}

function JobRow({ job, store, index, top, now }: { job: Job; store: JobStore; index: number; top: number; now: number }) {
  const state = stateOf(job, store.isRunning(job.id));
  return (
    <div
      role="row"
      class={`job-row state-${state}`}
      aria-rowindex={index + 2}
      style={{ transform: `translateY(${top}px)`, height: `${ROW_HEIGHT}px` }}
    >
      <span role="cell" class="cell-id">
        <a href={jobHref(job.id)}>{job.id}</a>
      </span>
      <span role="cell">
        <Badge state={state} />
      </span>
      <span role="cell" class="cell-name" title={job.name}>
        {job.name}
      </span>
      <span role="cell" class="cell-schedule" title={job.externalCall}>
        {scheduleOf(job)}
      </span>
      <span role="cell" class="cell-next" title={job.nextRunAt ?? ''}>
        {job.enabled ? formatMoment(job.nextRunAt, now) : t.never} <small>{job.enabled ? formatIn(job.nextRunAt, now) : ''}</small>
      </span>
      <span role="cell">
        <Strip runs={store.strips.get(job.id)} />
      </span>
    </div>
  );
}

/** `Pause all` / `Resume all`: the jobs the filter shows that the action would change, in one call. */
function BulkDialog({
  api,
  store,
  kind,
  jobs,
  onClose,
}: {
  api: Api;
  store: JobStore;
  kind: 'pause' | 'resume';
  jobs: readonly Job[];
  onClose: () => void;
}) {
  const [note, setNote] = useState('');
  const [targets] = useState(() => jobs.filter((job) => (kind === 'pause' ? job.enabled : !job.enabled)).map((job) => job.id));
  const confirm = async () => {
    const answer =
      kind === 'pause'
        ? (await api.request<{ pauseJobs: Job[] }>(PAUSE_MANY, { ids: targets, note: note.trim() || null })).pauseJobs
        : (await api.request<{ resumeJobs: Job[] }>(RESUME_MANY, { ids: targets })).resumeJobs;
    for (const job of answer) store.put(job);
  };
  return (
    <Dialog
      title={kind === 'pause' ? t.pauseAllTitle(targets.length) : t.resumeAllTitle(targets.length)}
      confirm={kind === 'pause' ? t.pauseAll : t.resumeAll}
      onConfirm={confirm}
      onClose={onClose}
      disabled={targets.length === 0}
    >
      {targets.length === 0 ? <p>{t.nothingToDo}</p> : kind === 'pause' && <NoteField value={note} onInput={setNote} />}
    </Dialog>
  );
}

// What the dashboard shows, decided by plain functions over the API's objects: a job's state,
// what a search, the filters and a sort leave of 10,000 jobs, where a run goes in a list. No DOM,
// no network: test/web-model.test.ts checks them with literals.

export type Role = 'VIEWER' | 'OPERATOR' | 'ADMIN';
export type RunStatus = 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'ABANDONED' | 'SKIPPED' | 'CANCELLED';
export type LogLevel = 'DEBUG' | 'INFO' | 'WARNING' | 'ERROR';

/** A job as the list asks for it (documents.ts, JobFields). */
export interface Job {
  id: string;
  name: string;
  externalCall: string;
  connectorId: string;
  period: string | null;
  cron: string | null;
  timeZone: string | null;
  enabled: boolean;
  pausedNote: string | null;
  nextRunAt: string | null;
  consecutiveFailures: number;
}

/** A run (documents.ts, RunFields). */
export interface Run {
  id: string;
  jobId: string;
  status: RunStatus;
  trigger: string;
  scheduledAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  error: string | null;
  instance: string | null;
  missed: number;
  attempt: number;
  retryOf: string | null;
}

export interface LogEntry {
  id: string;
  at: string;
  level: LogLevel;
  message: string;
  jobId: string | null;
  runId: string | null;
  details: unknown;
}

export type JobEventKind = 'RUN_STARTED' | 'RUN_SUCCEEDED' | 'RUN_FAILED' | 'RUN_SKIPPED' | 'JOB_CREATED' | 'JOB_UPDATED' | 'JOB_DELETED';

export interface JobEvent {
  kind: JobEventKind;
  at: string;
  jobId: string;
  job: Job | null;
  run: Run | null;
}

/** SPEC §11's states, in the order they are decided: the first that holds. */
export const STATES = ['paused', 'running', 'failing', 'ok'] as const;
export type JobState = (typeof STATES)[number];

/**
 * paused: not enabled; running: a run of it is in progress; failing: its last final outcome
 * failed (`consecutiveFailures`, SPEC §3b: a due time's last attempt or a manual run, FAILED or
 * TIMED_OUT; a failed attempt that will be retried is not final yet); ok otherwise, also a job
 * that never ran.
 */
export function stateOf(job: Pick<Job, 'enabled' | 'consecutiveFailures'>, running: boolean): JobState {
  if (!job.enabled) return 'paused';
  if (running) return 'running';
  if (job.consecutiveFailures > 0) return 'failing';
  return 'ok';
}

/** The roles that may pause, resume, run, edit and delete jobs (SPEC §8). */
export const canOperate = (role: Role | null | undefined): boolean => role === 'OPERATOR' || role === 'ADMIN';

/** `0:00:30`, or the cron and its zone. */
export function scheduleOf(job: Pick<Job, 'period' | 'cron' | 'timeZone'>): string {
  if (job.cron !== null) return job.timeZone && job.timeZone !== 'UTC' ? `${job.cron} (${job.timeZone})` : job.cron;
  return job.period ?? '';
}

export const SORTS = ['id', 'name', 'next', 'state'] as const;
export type SortKey = (typeof SORTS)[number];

export interface ListQuery {
  /** Text that the id, the name or the call contains, in any case. */
  search: string;
  state: JobState | '';
  connector: string;
  sort: SortKey;
}

export const ALL: ListQuery = { search: '', state: '', connector: '', sort: 'id' };

/** Each job's text to search, lower-cased once per job object (a changed job is a new object). */
const haystacks = new WeakMap<Job, string>();
const haystackOf = (job: Job): string => {
  let text = haystacks.get(job);
  if (text === undefined) haystacks.set(job, (text = `${job.id}\n${job.name}\n${job.externalCall}`.toLocaleLowerCase()));
  return text;
};

export function matches(job: Job, needle: string): boolean {
  return needle === '' || haystackOf(job).includes(needle);
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });
const STATE_ORDER: Record<JobState, number> = { failing: 0, running: 1, paused: 2, ok: 3 };

/** The jobs a query leaves, in its order. Some milliseconds for 10,000 jobs. */
export function visibleJobs(jobs: Iterable<Job>, isRunning: (id: string) => boolean, query: ListQuery): Job[] {
  const needle = query.search.trim().toLocaleLowerCase();
  const shown: Job[] = [];
  for (const job of jobs) {
    if (query.connector !== '' && job.connectorId !== query.connector) continue;
    if (!matches(job, needle)) continue;
    if (query.state !== '' && stateOf(job, isRunning(job.id)) !== query.state) continue;
    shown.push(job);
  }
  const byId = (a: Job, b: Job) => collator.compare(a.id, b.id) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  switch (query.sort) {
    case 'id':
      return shown.sort(byId);
    case 'name':
      return shown.sort((a, b) => collator.compare(a.name, b.name) || byId(a, b));
    case 'next':
      // The soonest first; paused and ended jobs (no next due time) last.
      return shown.sort((a, b) => dueOrder(a) - dueOrder(b) || byId(a, b));
    case 'state': {
      const rank = (job: Job) => STATE_ORDER[stateOf(job, isRunning(job.id))];
      return shown.sort((a, b) => rank(a) - rank(b) || byId(a, b));
    }
  }
}

const dueOrder = (job: Job): number => (job.nextRunAt === null ? Number.MAX_SAFE_INTEGER : Date.parse(job.nextRunAt));

/** Newest first, as the API lists runs: by due time, then by id (a number as a string). */
export function compareRuns(a: Run, b: Run): number {
  const at = Date.parse(b.scheduledAt) - Date.parse(a.scheduledAt);
  if (at !== 0) return at;
  return b.id.length - a.id.length || (b.id > a.id ? 1 : b.id < a.id ? -1 : 0);
}

/** A run put into a newest-first list (replacing its earlier self), the list kept at `max` at most. */
export function withRun(runs: readonly Run[], run: Run, max = Infinity): Run[] {
  const next = runs.filter((r) => r.id !== run.id);
  let at = next.findIndex((r) => compareRuns(run, r) < 0);
  if (at < 0) at = next.length;
  next.splice(at, 0, run);
  return next.length > max ? next.slice(0, max) : next;
}

/** How late a run started: `startedAt − scheduledAt` (SPEC §5); null for a run that never started. */
export function latenessMs(run: Pick<Run, 'scheduledAt' | 'startedAt'>): number | null {
  return run.startedAt === null ? null : Date.parse(run.startedAt) - Date.parse(run.scheduledAt);
}

/** The outcome a run shows in a strip: ok, failed (FAILED, TIMED_OUT, ABANDONED, CANCELLED), skipped or running. */
export function outcomeOf(status: RunStatus): 'ok' | 'failed' | 'skipped' | 'running' {
  if (status === 'SUCCEEDED') return 'ok';
  if (status === 'RUNNING') return 'running';
  if (status === 'SKIPPED') return 'skipped';
  return 'failed';
}

export const LEVELS: readonly LogLevel[] = ['DEBUG', 'INFO', 'WARNING', 'ERROR'];

export interface RetryPolicy {
  maxAttempts: number;
  backoffSeconds: number;
  backoffFactor: number;
  maxBackoffSeconds: number;
}

export interface PlannedRun {
  at: string;
  localTime: string;
  dst: string | null;
}

/** A job as its page asks for it (documents.ts, JOB). */
export interface JobDetails extends Job {
  timeoutSeconds: number;
  endAt: string | null;
  overlap: string;
  misfire: string;
  autoPauseAfterFailures: number | null;
  createdAt: string;
  updatedAt: string;
  retry: RetryPolicy;
  nextRuns: PlannedRun[];
}

/** The editable fields of a job, as a form holds them (text). */
export interface JobForm {
  name: string;
  externalCall: string;
  period: string;
  cron: string;
  timeZone: string;
  timeoutSeconds: string;
  overlap: string;
  misfire: string;
  maxAttempts: string;
  autoPauseAfterFailures: string;
}

export function formOf(job: JobDetails): JobForm {
  return {
    name: job.name,
    externalCall: job.externalCall,
    period: job.period ?? '',
    cron: job.cron ?? '',
    timeZone: job.timeZone ?? '',
    timeoutSeconds: String(job.timeoutSeconds),
    overlap: job.overlap,
    misfire: job.misfire,
    maxAttempts: String(job.retry.maxAttempts),
    autoPauseAfterFailures: job.autoPauseAfterFailures === null ? '' : String(job.autoPauseAfterFailures),
  };
}

/**
 * The `UpdateJobInput` of an edit: only the fields whose value changed, so that an edit of the
 * name does not re-send (and re-anchor) the schedule. Numbers go as typed: the API says what is
 * wrong with them, in its words.
 */
export function updateInputOf(before: JobForm, after: JobForm, job: JobDetails): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  const changed = (key: keyof JobForm) => after[key].trim() !== before[key].trim();
  const number = (text: string) => (text.trim() === '' ? null : Number(text.trim()));
  for (const key of ['name', 'externalCall', 'overlap', 'misfire'] as const) if (changed(key)) input[key] = after[key].trim();
  if (changed('period') && after.period.trim() !== '') input['period'] = after.period.trim();
  if (changed('cron') && after.cron.trim() !== '') input['cron'] = after.cron.trim();
  if (changed('timeZone')) input['timeZone'] = after.timeZone.trim() || null;
  if (changed('timeoutSeconds')) input['timeoutSeconds'] = number(after.timeoutSeconds);
  if (changed('autoPauseAfterFailures')) input['autoPauseAfterFailures'] = number(after.autoPauseAfterFailures);
  if (changed('maxAttempts')) input['retry'] = { ...job.retry, maxAttempts: number(after.maxAttempts) };
  return input;
}

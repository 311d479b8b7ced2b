/**
 * The steps of the job-change use cases that run inside a transaction, and the events each
 * publishes once its transaction has committed. createJob, updateJob, pauseJob, resumeJob and
 * deleteJob run one of them in a transaction of their own (job-service.ts); applyJobs runs many
 * in one (apply-jobs.ts). One code path for both, so a job applied from a list gets exactly the
 * grid rules, due-time accounting, audit entries and events of the same change made by hand.
 */
import type { Clock } from '../clock.ts';
import type { ConnectorRegistry } from '../connectors/types.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { databaseNow, deleteJobRow, insertJobs, type JobChanges, type NewJob, updateJobRow } from '../db/jobs.ts';
import { insertLogEntries, type NewLogEntry } from '../db/log.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { cancelRunsOfJob, lastScheduledAt, lastScheduledAtOf } from '../db/runs.ts';
import { conflict, type DomainError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { accountChange, nextDueAfter, sameSchedule } from '../scheduling/changes.ts';
import { formatExternalCall } from '../scheduling/external-call.ts';
import { endLogEntry } from '../scheduling/outcome.ts';
import { formatPeriod } from '../scheduling/period.ts';
import { firstDueAfter, initialDue, ruleOf } from '../scheduling/schedule.ts';
import type { Scheduler } from '../scheduling/scheduler.ts';
import { createDefinition, type CreateJobInput, type Definition } from './job-definition.ts';
import { auditEntry, recordChangeSkipped, scheduleOf, targetWarnings } from './job-entries.ts';

/** The error of a run ended because its job was deleted. */
export const JOB_DELETED = 'job deleted';

export interface JobServiceDeps {
  sql: Sql;
  clock: Clock;
  bus: EventBus;
  registry: ConnectorRegistry;
  scheduler: Scheduler;
  /**
   * The database's clock, read in a change's transaction once the job row is locked: it decides
   * which due times are already due when the change commits (SPEC §3). Defaults to the
   * database's clock_timestamp(); tests that drive the scheduler with a controlled clock far
   * from the database's time may pass one that reads their clock.
   */
  databaseNow?: (tx: Queryable) => Promise<number>;
}

export const taken = (id: string): DomainError => conflict(`A job with id "${id}" already exists.`);

/** What a change does, for the WARNING about the due times it leaves behind. */
export const PAUSED = 'the job was paused';
const DELETED = 'the job was deleted';

/** The pending-retry columns of a job with none waiting. */
const NO_RETRY = { retryAt: null, retryAttempt: null, retryOf: null, retryScheduledAt: null } as const;

export const readDatabaseNow = (deps: JobServiceDeps, tx: Queryable): Promise<number> => (deps.databaseNow ?? databaseNow)(tx);

// ---------------------------------------------------------------------------------------------
// Creating

export interface PlannedJob {
  job: Omit<NewJob, 'nextDueAt'>;
  nextDueMs: number | null;
}

/** A new job's row from its input (validated, all of it, before anything is written), and its first due time. */
export function planCreate(input: CreateJobInput, now: number): PlannedJob {
  const { id, enabled, startAt, definition } = createDefinition(input);
  return planNewJob(id, enabled, startAt, definition, now);
}

/** A new job's row from its validated definition, and its first due time. */
export function planNewJob(id: string, enabled: boolean, startAt: Date | null, definition: Definition, now: number): PlannedJob {
  const { anchorMs, nextDueMs } = initialDue(ruleOf({ ...definition, anchorAt: new Date(now) }), now, startAt?.getTime() ?? null);
  return { job: { id, ...definition, enabled, anchorAt: new Date(anchorMs), now: new Date(now) }, nextDueMs };
}

export interface Inserted {
  /** The jobs created, in the order planned, up to the first whose id was taken. */
  created: JobRow[];
  entries: LogRow[];
  /** The position of the first planned job whose id a stored job has (not inserted); -1 when none. */
  takenAt: number;
  /** The ids of the jobs inserted after the taken one: the caller deletes them or rolls back. */
  insertedAfter: string[];
}

/** Inserts planned jobs (of distinct ids) with their audit entries and target warnings. */
export async function insertPlanned(
  tx: Queryable,
  deps: JobServiceDeps,
  planned: readonly PlannedJob[],
  now: number,
  actor: string,
): Promise<Inserted> {
  // Runs of a deleted job with one of these ids stay: its new grid starts after their due
  // times, so no claim of it clashes with their (job, due time) key.
  const recorded = await lastScheduledAtOf(
    tx,
    planned.map((p) => p.job.id),
  );
  const jobs = planned.map(({ job, nextDueMs }) => {
    const next = nextDueAfter({ rule: ruleOf(job), nextDueMs }, recorded.get(job.id) ?? null);
    return { ...job, nextDueAt: next === null ? null : new Date(next) };
  });
  const rows = new Map((await insertJobs(tx, jobs)).map((row) => [row.id, row]));
  const takenAt = jobs.findIndex((job) => !rows.has(job.id));
  const created = (takenAt >= 0 ? jobs.slice(0, takenAt) : jobs).map((job) => rows.get(job.id)!);
  const insertedAfter = takenAt >= 0 ? jobs.slice(takenAt + 1).flatMap((job) => (rows.has(job.id) ? [job.id] : [])) : [];
  const written = created.flatMap((row) => [
    auditEntry(row, now, `Job "${row.id}" created`, {
      externalCall: formatExternalCall(row),
      ...(row.periodSeconds !== null ? { period: formatPeriod(row.periodSeconds) } : { cron: row.cron, timeZone: row.timeZone }),
      enabled: row.enabled,
      actor,
    }),
    ...targetWarnings(row, deps.registry.get(row.connectorId), now),
  ]);
  return { created, entries: await insertLogEntries(tx, written), takenAt, insertedAfter };
}

/** After the commit: a `job:created` event per job, then its entries. */
export function publishCreated(deps: JobServiceDeps, created: readonly JobRow[], entries: readonly LogRow[], now: number): void {
  const entriesOf = new Map<string, LogRow[]>(created.map((job) => [job.id, []]));
  for (const entry of entries) entriesOf.get(entry.jobId!)?.push(entry);
  for (const job of created) announce(deps, 'job:created', job, now, entriesOf.get(job.id)!);
}

// ---------------------------------------------------------------------------------------------
// Changing

/** A change of one job, planned under its row lock. */
export interface PlannedChange {
  changes: JobChanges;
  message: string;
  details: Record<string, unknown>;
  /** What the change does to the schedule, for the WARNING about the due times it leaves behind. */
  change?: string;
  level?: 'WARNING';
}

/**
 * An update of a locked job (updateJob, applyJobs): `changes` are the definition fields whose
 * value differs from the row's. The grid moves when the schedule itself or the start changes
 * (at `startAtMs`, or at now); name, call and policies keep it. `enabled` pauses or resumes.
 */
export function planUpdate(
  job: JobRow,
  now: number,
  edit: { changes: JobChanges; enabled?: boolean | null; startAtMs: number | null; details: Record<string, unknown> },
): PlannedChange {
  const { startAtMs } = edit;
  const changes: JobChanges = { ...edit.changes };
  const rule = ruleOf({ ...job, ...changes });
  const moved = ['periodSeconds', 'cron', 'timeZone'].filter((key) => key in changes);
  if (moved.length > 0 || startAtMs !== null) {
    const { anchorMs, nextDueMs } = initialDue(rule, now, startAtMs);
    changes.anchorAt = new Date(anchorMs);
    changes.nextDueAt = nextDueMs === null ? null : new Date(nextDueMs);
  } else if ('endAt' in changes) {
    // A new end keeps the grid: the next due time stays while it lies within it; a job that
    // had ended goes on from now when the end moves later.
    const kept = job.nextDueAt && (rule.endMs === null || job.nextDueAt.getTime() <= rule.endMs) ? job.nextDueAt : null;
    const next = job.nextDueAt === null ? firstDueAfter({ ...rule, anchorMs: job.anchorAt.getTime() }, now) : null;
    changes.nextDueAt = kept ?? (next === null ? null : new Date(next));
  }
  if (edit.enabled === false && job.enabled) changes.enabled = false;
  if (edit.enabled === true && !job.enabled) Object.assign(changes, resumeChanges(job, changes, now));
  const change = [
    changes.enabled === false ? PAUSED : null,
    'periodSeconds' in changes ? "the job's period changed" : null,
    'cron' in changes || 'timeZone' in changes ? "the job's cron schedule changed" : null,
    startAtMs !== null ? "the job's start time changed" : null,
    'endAt' in changes ? "the job's end time changed" : null,
  ].filter((c) => c !== null);
  return { changes, message: `Job "${job.id}" updated`, details: edit.details, change: change.join(' and ') };
}

/** A resume: due times while paused were not due; the grid stays, and the next due time is the first after now. */
export function resumeChanges(job: JobRow, changes: JobChanges, now: number): JobChanges {
  const next = firstDueAfter(ruleOf({ ...job, ...changes }), now);
  // A change that moved the grid (a period, cron or start) chose its first due time, after now;
  // any other keeps the row's next due time, which a pause left behind: it starts after now.
  const nextDueAt = changes.anchorAt !== undefined ? (changes.nextDueAt ?? null) : next === null ? null : new Date(next);
  // A resume starts the count of failures afresh (SPEC §3b).
  return { enabled: true, pausedNote: null, nextDueAt, consecutiveFailures: 0 };
}

export interface WrittenChange {
  job: JobRow;
  skipped: RunRow | null;
  entries: LogRow[];
}

/**
 * Writes a planned change of a job locked in `tx`. A change away from the job's enabled
 * schedule (a pause, a new period or start) records the due times already due by the database's
 * clock (`dbNow`, read once the row is locked) and not yet claimed (SPEC §3: a change never loses
 * a due time), and keeps the next due time after every due time recorded for the job.
 */
export async function writeChange(
  tx: Queryable,
  deps: JobServiceDeps,
  job: JobRow,
  planned: PlannedChange,
  now: number,
  dbNow: () => Promise<number>,
): Promise<WrittenChange> {
  const changes = { ...planned.changes };
  const before = scheduleOf(job);
  const after = scheduleOf({ ...job, ...changes });
  let skipped: { run: RunRow | null; entry: NewLogEntry } | null = null;
  if (!sameSchedule(before, after)) {
    const account = accountChange(before, after, await dbNow(), await lastScheduledAt(tx, job.id));
    if (account.nextDueMs !== after.nextDueMs) changes.nextDueAt = account.nextDueMs === null ? null : new Date(account.nextDueMs);
    // A due time waiting under QUEUE_ONE is accounted with the others (in `account.skipped`).
    Object.assign(changes, { queuedDueAt: null, queuedMissed: 0 });
    // A retry waiting for its backoff does not outlive a pause.
    if (changes.enabled === false) Object.assign(changes, NO_RETRY);
    if (account.skipped)
      skipped = await recordChangeSkipped(tx, {
        jobId: job.id,
        skipped: account.skipped,
        change: planned.change || 'the job changed',
        now,
        instance: deps.scheduler.holder.instance,
      });
  }
  const updated = (await updateJobRow(tx, job.id, changes, new Date(now)))!;
  const audit: NewLogEntry = { ...auditEntry(updated, now, planned.message, planned.details), level: planned.level ?? 'INFO' };
  const warnings = changes.connectorId || changes.method ? targetWarnings(updated, deps.registry.get(updated.connectorId), now) : [];
  const entries = await insertLogEntries(tx, [audit, ...(skipped ? [skipped.entry] : []), ...warnings]);
  return { job: updated, skipped: skipped?.run ?? null, entries };
}

/** After the commit: the SKIPPED run a change recorded, then `job:updated` and its entries. */
export function publishChange(deps: JobServiceDeps, written: WrittenChange, now: number): void {
  if (written.skipped) deps.bus.publish('run:skipped', { at: new Date(now), run: written.skipped });
  if (written.entries.length > 0) announce(deps, 'job:updated', written.job, now, written.entries);
}

// ---------------------------------------------------------------------------------------------
// Deleting

export interface WrittenDelete {
  id: string;
  cancelled: RunRow[];
  skipped: RunRow | null;
  entries: LogRow[];
}

/**
 * Deletes a job locked in `tx`: its due times already due by `dbNowMs` and not claimed are
 * recorded before it goes, and its runs in flight end with it.
 */
export async function writeDelete(
  tx: Queryable,
  deps: JobServiceDeps,
  job: JobRow,
  now: number,
  dbNowMs: number,
  actor: string,
): Promise<WrittenDelete> {
  const { id } = job;
  const at = new Date(now);
  const account = accountChange(scheduleOf(job), null, dbNowMs);
  const skipped =
    account.skipped &&
    (await recordChangeSkipped(tx, {
      jobId: id,
      skipped: account.skipped,
      change: DELETED,
      now,
      instance: deps.scheduler.holder.instance,
    }));
  await deleteJobRow(tx, id);
  // Its run in flight ends with it, in this transaction: the holder's later writes are refused
  // by the lease fence, and a job re-created with this id does not inherit a running run.
  const cancelled = await cancelRunsOfJob(tx, { jobId: id, now: at, error: JOB_DELETED });
  const externalCall = formatExternalCall(job);
  const runEntries = cancelled.map((run): NewLogEntry => {
    const entry = endLogEntry({ jobId: id, runId: run.id, externalCall }, { status: 'CANCELLED', error: JOB_DELETED })!;
    return { at, jobId: id, runId: run.id, ...entry };
  });
  const audit: NewLogEntry = { at, level: 'INFO', message: `Job "${id}" deleted`, jobId: id, details: { actor } };
  const skippedEntries = skipped ? [skipped.entry] : [];
  return { id, cancelled, skipped: skipped?.run ?? null, entries: await insertLogEntries(tx, [audit, ...skippedEntries, ...runEntries]) };
}

/** After the commit: the SKIPPED run, the cancelled runs (their calls aborted), `job:deleted`, the entries. */
export function publishDelete(deps: JobServiceDeps, written: WrittenDelete, now: number): void {
  const at = new Date(now);
  if (written.skipped) deps.bus.publish('run:skipped', { at, run: written.skipped });
  for (const run of written.cancelled) {
    deps.bus.publish('run:finished', { at, run });
    abortCall(deps, run.id, at);
  }
  deps.bus.publish('job:deleted', { at, jobId: written.id });
  for (const entry of written.entries) deps.bus.publish('log:added', { entry });
}

/** Aborts a run's call wherever it runs: here directly, elsewhere through a cancel request. */
function abortCall(deps: JobServiceDeps, runId: string, at: Date): void {
  // Its end is refused (the run is no longer RUNNING); the holder only stops calling.
  if (deps.scheduler.cancelLocal(runId)) return;
  // An instance that misses this event notices at its next lease renewal, which no longer finds the run.
  deps.bus.publish('run:cancel-requested', { at, runId });
}

function announce(deps: JobServiceDeps, topic: 'job:created' | 'job:updated', job: JobRow, now: number, entries: readonly LogRow[]): void {
  deps.bus.publish(topic, { at: new Date(now), job });
  for (const entry of entries) deps.bus.publish('log:added', { entry });
}

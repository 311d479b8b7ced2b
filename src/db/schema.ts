import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import {
  AUTH_SCHEMES,
  CIRCUIT_STATES,
  type ConnectorHeader,
  LOG_LEVELS,
  MISFIRE_POLICIES,
  OVERLAP_POLICIES,
  RUN_STATUSES,
  RUN_TRIGGERS,
  STORED_CONNECTOR_KINDS,
} from './rows.ts';

const at = (name: string) => timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });

export const jobs = pgTable(
  'jobs',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    connectorId: text('connector_id').notNull(),
    method: text('method').notNull(),
    /** Null on a cron job: a job has a period or a cron, exactly one. */
    periodSeconds: integer('period_seconds'),
    /** 5 or 6 fields, evaluated in `timeZone` (SPEC §3b). */
    cron: text('cron'),
    /** An IANA zone name; null on a period job. */
    timeZone: text('time_zone'),
    /** No due time after it (one exactly at it runs). */
    endAt: at('end_at'),
    overlap: text('overlap', { enum: OVERLAP_POLICIES }).notNull().default('SKIP'),
    misfire: text('misfire', { enum: MISFIRE_POLICIES }).notNull().default('RUN_ONCE'),
    /** 1 = no retry. */
    retryMaxAttempts: integer('retry_max_attempts').notNull().default(1),
    retryBackoffSeconds: integer('retry_backoff_seconds').notNull().default(10),
    retryBackoffFactor: doublePrecision('retry_backoff_factor').notNull().default(2),
    retryMaxBackoffSeconds: integer('retry_max_backoff_seconds').notNull().default(3600),
    /** Null: never paused for failures. */
    autoPauseAfterFailures: integer('auto_pause_after_failures'),
    /** Final outcomes in a row that failed: a success, or a resume, resets it. */
    consecutiveFailures: integer('consecutive_failures').notNull().default(0),
    enabled: boolean('enabled').notNull().default(true),
    pausedNote: text('paused_note'),
    /** Null: the default, min(period, 1 h), which follows later period changes. */
    timeoutSeconds: integer('timeout_seconds'),
    /** The grid is anchor + k·period. */
    anchorAt: at('anchor_at').notNull(),
    /** The oldest due time not yet claimed; null when the job has none left (past its `endAt`). */
    nextDueAt: at('next_due_at'),
    /** QUEUE_ONE: the due time waiting for the run in progress to end (and the due times coalesced into it). */
    queuedDueAt: at('queued_due_at'),
    queuedMissed: integer('queued_missed').notNull().default(0),
    /** The retry waiting for its backoff: when it is due, which attempt, of which first run and due time. */
    retryAt: at('retry_at'),
    retryAttempt: integer('retry_attempt'),
    retryOf: bigint('retry_of', { mode: 'number' }),
    retryScheduledAt: at('retry_scheduled_at'),
    createdAt: at('created_at').notNull(),
    updatedAt: at('updated_at').notNull(),
  },
  // No index on next_due_at: every claim moves it, and an update that changes no indexed column
  // is HOT (heap-only): the old version is pruned from its page without VACUUM, so a job's row
  // does not leave a dead tuple (and index entries) behind per run, even where autovacuum is off.
  // The claim reads the table whole instead (a few hundred pages at 10,000 jobs). Migration 0004
  // also sets the table's fillfactor, which leaves room on each page for those new versions.
  (t) => [
    check('jobs_period_positive', sql`${t.periodSeconds} > 0`),
    check('jobs_period_or_cron', sql`(${t.periodSeconds} is null) <> (${t.cron} is null)`),
  ],
);

export const jobRuns = pgTable(
  'job_runs',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    // No foreign key: runs outlive their job (SPEC §3, deleting keeps runs and log entries).
    jobId: text('job_id').notNull(),
    trigger: text('trigger', { enum: RUN_TRIGGERS }).notNull(),
    scheduledAt: at('scheduled_at').notNull(),
    startedAt: at('started_at'),
    finishedAt: at('finished_at'),
    status: text('status', { enum: RUN_STATUSES }).notNull(),
    error: text('error'),
    instance: text('instance'),
    missed: integer('missed').notNull().default(0),
    /** 1 for a first attempt; a RETRY run counts on from the run it retries. */
    attempt: integer('attempt').notNull().default(1),
    /** A RETRY run: the first attempt's run id. */
    retryOf: bigint('retry_of', { mode: 'number' }),
    /** The fencing token: the holding process's token. Writes of the run must match it. */
    leaseToken: uuid('lease_token'),
    leaseExpiresAt: at('lease_expires_at'),
    /** Set by cancelRun; the holding instance sees it when it renews its leases and aborts the run. */
    cancelRequestedAt: at('cancel_requested_at'),
  },
  (t) => [
    // The atomic claim key: one scheduled run per job and due time, whatever instance claims it.
    uniqueIndex('job_runs_due_key')
      .on(t.jobId, t.scheduledAt)
      .where(sql`${t.trigger} = 'SCHEDULE'`),
    // And one retry per job, due time and attempt (SPEC §3b: a retry is exactly once like a due time).
    uniqueIndex('job_runs_retry_key')
      .on(t.jobId, t.scheduledAt, t.attempt)
      .where(sql`${t.trigger} = 'RETRY'`),
    // The runs in progress of a job. Not unique: under the ALLOW overlap policy several run at once;
    // under SKIP and QUEUE_ONE every insert of a RUNNING run looks here with the job row locked.
    index('job_runs_running_idx')
      .on(t.jobId)
      .where(sql`${t.status} = 'RUNNING'`),
    index('job_runs_lease_idx')
      .on(t.leaseExpiresAt)
      .where(sql`${t.status} = 'RUNNING'`),
    index('job_runs_job_page_idx').on(t.jobId, t.scheduledAt.desc(), t.id.desc()),
    index('job_runs_page_idx').on(t.scheduledAt.desc(), t.id.desc()),
  ],
);

export const logEntries = pgTable(
  'log_entries',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: at('at').notNull(),
    level: text('level', { enum: LOG_LEVELS }).notNull(),
    message: text('message').notNull(),
    jobId: text('job_id'),
    runId: bigint('run_id', { mode: 'number' }),
    details: jsonb('details'),
  },
  (t) => [
    index('log_entries_page_idx').on(t.at.desc(), t.id.desc()),
    index('log_entries_job_page_idx').on(t.jobId, t.at.desc(), t.id.desc()),
  ],
);

export const connectors = pgTable('connectors', {
  id: text('id').primaryKey(),
  kind: text('kind', { enum: STORED_CONNECTOR_KINDS }).notNull(),
  baseUrl: text('base_url').notNull(),
  headers: jsonb('headers').$type<ConnectorHeader[]>().notNull().default([]),
  authScheme: text('auth_scheme', { enum: AUTH_SCHEMES }),
  /** Write-only through the API: no query returns it. */
  secret: text('secret'),
  timeoutSeconds: integer('timeout_seconds'),
  /** The circuit breaker (SPEC §3b): null = off. */
  breakerFailures: integer('breaker_failures'),
  breakerProbeSeconds: integer('breaker_probe_seconds').notNull().default(30),
  /** At most this many calls at once across all instances; null = unlimited. */
  maxConcurrent: integer('max_concurrent'),
  /** The circuit's state, the same for every instance: it lives here, changed under the row's lock. */
  circuitState: text('circuit_state', { enum: CIRCUIT_STATES }).notNull().default('CLOSED'),
  circuitFailures: integer('circuit_failures').notNull().default(0),
  circuitOpenedAt: at('circuit_opened_at'),
  circuitNextProbeAt: at('circuit_next_probe_at'),
  /** The run making the probe call while HALF_OPEN. */
  circuitProbeRunId: bigint('circuit_probe_run_id', { mode: 'number' }),
  createdAt: at('created_at').notNull(),
  updatedAt: at('updated_at').notNull(),
});

/**
 * The daily housekeeping (SPEC §4), one row per day it was claimed: the primary key makes the
 * claim (insert … on conflict do nothing) exactly once per day across every instance sharing
 * the database. A row with no finished_at is a housekeeping that failed or whose instance died.
 */
export const housekeepingDays = pgTable('housekeeping_days', {
  /** The UTC date of the HOUSEKEEPING_AT time it stands for. */
  day: date('day', { mode: 'string' }).primaryKey(),
  instance: text('instance').notNull(),
  claimedAt: at('claimed_at').notNull(),
  finishedAt: at('finished_at'),
});

import type { Connector } from '../connectors/types.ts';
import type { Queryable } from '../db/client.ts';
import type { NewLogEntry } from '../db/log.ts';
import type { JobRow, RunRow } from '../db/rows.ts';
import { insertSkippedRun } from '../db/runs.ts';
import { changeSkippedMessage, clashLogEntry, type Schedule } from '../scheduling/changes.ts';
import { formatExternalCall } from '../scheduling/external-call.ts';
import { ruleOf } from '../scheduling/schedule.ts';

/** What the job-change use cases write beside the change: audit entries, warnings, SKIPPED runs. */

export function auditEntry(job: Pick<JobRow, 'id'>, now: number, message: string, details: Record<string, unknown>): NewLogEntry {
  return { at: new Date(now), level: 'INFO', message, jobId: job.id, details };
}

/** Says when a job calls a connector or operation that does not exist (yet). */
export function targetWarnings(job: JobRow, connector: Connector | undefined, now: number): NewLogEntry[] {
  const problem = !connector
    ? `connector "${job.connectorId}" does not exist (yet)`
    : connector.hasMethod(job.method) === false
      ? `operation "${job.method}" of ${job.connectorId} does not exist (yet)`
      : null;
  if (!problem) return [];
  const externalCall = formatExternalCall(job);
  return [
    {
      at: new Date(now),
      level: 'WARNING',
      message: `Job "${job.id}" calls ${externalCall}, but ${problem}; its runs fail until it does`,
      jobId: job.id,
      details: { externalCall },
    },
  ];
}

/**
 * Records the due times a change leaves behind as one SKIPPED run with a WARNING naming the
 * change; when a run for that due time exists already (not expected), the WARNING says so instead.
 */
export async function recordChangeSkipped(
  tx: Queryable,
  args: { jobId: string; skipped: { scheduledMs: number; missed: number }; change: string; now: number; instance: string },
): Promise<{ run: RunRow | null; entry: NewLogEntry }> {
  const { jobId, skipped, change, now } = args;
  const scheduledAt = new Date(skipped.scheduledMs);
  const run = await insertSkippedRun(tx, { jobId, scheduledAt, missed: skipped.missed, now: new Date(now), instance: args.instance });
  if (!run) return { run: null, entry: clashLogEntry({ jobId, scheduledAt, missed: skipped.missed }, now) };
  const entry: NewLogEntry = {
    at: new Date(now),
    level: 'WARNING',
    message: changeSkippedMessage(jobId, skipped, change),
    jobId,
    runId: run.id,
    details: { scheduledAt: scheduledAt.toISOString(), missed: skipped.missed, change },
  };
  return { run, entry };
}

/** A job row's schedule, as the change accounting reads it. */
export function scheduleOf(
  job: Pick<
    JobRow,
    'enabled' | 'anchorAt' | 'periodSeconds' | 'cron' | 'timeZone' | 'endAt' | 'nextDueAt' | 'queuedDueAt' | 'queuedMissed'
  >,
): Schedule {
  return {
    enabled: job.enabled,
    rule: ruleOf(job),
    nextDueMs: job.nextDueAt?.getTime() ?? null,
    queued: job.queuedDueAt ? { scheduledMs: job.queuedDueAt.getTime(), missed: job.queuedMissed } : null,
  };
}

/** An update's input as its audit entry records it: the fields given, dates as ISO text. */
export function describeChanges(input: object): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(input)
      .filter(([, value]) => value !== undefined)
      .map(([key, value]) => [key, value instanceof Date ? value.toISOString() : value]),
  );
}

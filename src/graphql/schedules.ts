// The schedule types of SPEC §3b beside jobs.ts: the policies' enums, the retry policy, the
// preview of a job's next due times (Job.nextRuns) and the what-if of an outage (simulateDowntime).
import { listJobs } from '../db/jobs.ts';
import { MISFIRE_POLICIES, OVERLAP_POLICIES, type JobRow } from '../db/rows.ts';
import { badInput } from '../errors.ts';
import { type RetryPolicy } from '../jobs/job-definition.ts';
import { type DstAdjustment, formatLocalTime } from '../scheduling/cron.ts';
import { nextDueTimes, type PlannedDue, ruleOf } from '../scheduling/schedule.ts';
import { type DowntimeImpact, downtimeImpact, validateWindow } from '../scheduling/what-if.ts';
import { builder } from './builder.ts';
import { JobRef } from './types.ts';

export const OverlapPolicyEnum = builder.enumType('OverlapPolicy', {
  description: 'SKIP: a due time arriving while a run is in progress is SKIPPED; QUEUE_ONE: one waits for it; ALLOW: runs start on time.',
  values: OVERLAP_POLICIES,
});
export const MisfirePolicyEnum = builder.enumType('MisfirePolicy', {
  description: 'What due times claimed late (coalesced) become: RUN_ONCE, one run for them all; SKIP, one SKIPPED run.',
  values: MISFIRE_POLICIES,
});
const DST_ADJUSTMENTS = ['SHIFTED_FROM_GAP', 'FIRST_OF_REPEATED'] as const satisfies readonly DstAdjustment[];
export const DstAdjustmentEnum = builder.enumType('DstAdjustment', {
  description:
    'SHIFTED_FROM_GAP: the local time did not exist and runs at the end of the gap; FIRST_OF_REPEATED: it exists twice and runs at the first.',
  values: DST_ADJUSTMENTS,
});

export const RetryPolicyRef = builder.objectRef<RetryPolicy>('RetryPolicy').implement({
  description: 'A FAILED or TIMED_OUT run is retried after backoffSeconds × backoffFactor^(attempt − 1), capped at maxBackoffSeconds.',
  fields: (t) => ({
    maxAttempts: t.exposeInt('maxAttempts', { description: '1 = no retry.' }),
    backoffSeconds: t.exposeInt('backoffSeconds'),
    backoffFactor: t.exposeFloat('backoffFactor'),
    maxBackoffSeconds: t.exposeInt('maxBackoffSeconds'),
  }),
});

export const RetryPolicyInput = builder.inputType('RetryPolicyInput', {
  description: 'A field left out takes its default.',
  fields: (t) => ({
    maxAttempts: t.int({ description: '1–10, default 1 (no retry).' }),
    backoffSeconds: t.int({ description: '0–86400, default 10.' }),
    backoffFactor: t.float({ description: '1–10, default 2.' }),
    maxBackoffSeconds: t.int({ description: '1–86400, default 3600.' }),
  }),
});

// ---------------------------------------------------------------------------------------------
// Preview

interface PlannedRunValue extends PlannedDue {
  timeZone: string;
}

const PlannedRunRef = builder.objectRef<PlannedRunValue>('PlannedRun').implement({
  description: 'A due time the job has ahead of it.',
  fields: (t) => ({
    at: t.field({ type: 'DateTime', resolve: (run) => new Date(run.atMs) }),
    localTime: t.string({
      description: "ISO 8601 in the job's zone with its numeric offset, e.g. 2027-03-28T03:00:00.000+02:00 (+00:00 for a period job).",
      resolve: (run) => formatLocalTime(run.atMs, run.timeZone),
    }),
    dst: t.field({ type: DstAdjustmentEnum, nullable: true, resolve: (run) => run.dst }),
  }),
});

export const MAX_PLANNED_RUNS = 100;

/**
 * A job's next `count` due times from `nowMs`. An enabled job lists from its next due time when
 * that lies ahead (a change can have set it past due times already recorded); a paused one what
 * it would do after a resume now: its rule's first due times after now, as resumeJob takes them.
 */
export function plannedRuns(job: JobRow, nowMs: number, count: number): PlannedRunValue[] {
  const next = job.nextDueAt?.getTime() ?? null;
  const after = job.enabled && next !== null && next > nowMs ? next - 1 : nowMs;
  const timeZone = job.cron === null ? 'UTC' : (job.timeZone ?? 'UTC');
  return nextDueTimes(ruleOf(job), after, count).map((due) => ({ ...due, timeZone }));
}

builder.objectField(JobRef, 'nextRuns', (t) =>
  t.field({
    type: [PlannedRunRef],
    description: 'The next due times from now (count 1–100), without running anything; a paused job shows what a resume now would do.',
    args: { count: t.arg.int({ defaultValue: 10 }) },
    resolve: (job, args, ctx) => {
      const count = args.count ?? 10;
      if (!Number.isInteger(count) || count < 1 || count > MAX_PLANNED_RUNS)
        throw badInput('count', `count must be a whole number from 1 to ${MAX_PLANNED_RUNS}.`);
      return plannedRuns(job, ctx.jobs.now(), count);
    },
  }),
);

// ---------------------------------------------------------------------------------------------
// What-if

interface DowntimeImpactValue extends DowntimeImpact {
  job: JobRow;
}

const DowntimeImpactRef = builder.objectRef<DowntimeImpactValue>('DowntimeImpact').implement({
  description: 'What an outage over a window would do to one job under its policies, had the service come back at its end.',
  fields: (t) => ({
    job: t.field({ type: JobRef, resolve: (impact) => impact.job }),
    dueTimes: t.exposeInt('dueTimes', { description: 'Its due times in [from, to).' }),
    wouldRun: t.exposeInt('wouldRun', {
      description:
        'The runs that would start: 1 under RUN_ONCE, coalescing the rest; 0 under misfire SKIP, unless the window holds one lone due time (late by less than a period: no misfire, it runs).',
    }),
    wouldSkip: t.exposeInt('wouldSkip', {
      description: 'The due times that would get no run at all: 0 under RUN_ONCE, all under misfire SKIP (but a lone one, which runs).',
    }),
    firstDue: t.field({ type: 'DateTime', nullable: true, resolve: (impact) => new Date(impact.firstDueMs) }),
    lastDue: t.field({ type: 'DateTime', nullable: true, resolve: (impact) => new Date(impact.lastDueMs) }),
  }),
});

builder.queryField('simulateDowntime', (t) =>
  t.field({
    type: [DowntimeImpactRef],
    description: 'Per enabled job with a due time in [from, to) (at most 366 days), what an outage over it would do; runs nothing.',
    args: { from: t.arg({ type: 'DateTime', required: true }), to: t.arg({ type: 'DateTime', required: true }) },
    resolve: async (_, args, ctx) => {
      const [fromMs, toMs] = [args.from.getTime(), args.to.getTime()];
      validateWindow(fromMs, toMs);
      const jobs = await listJobs(ctx.sql, { enabled: true });
      return jobs.flatMap((job) => {
        const impact = downtimeImpact(
          { rule: ruleOf(job), misfire: job.misfire, nextDueMs: job.nextDueAt?.getTime() ?? null },
          fromMs,
          toMs,
        );
        return impact ? [{ job, ...impact }] : [];
      });
    },
  }),
);

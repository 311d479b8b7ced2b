/**
 * A job's definition as a person or program gives it (createJob, updateJob, applyJobs) and as the
 * jobs row stores it: validated and normalised here, all of it before anything is written, so
 * that every use case agrees on defaults and on what "the same definition" means.
 */
import { badInput } from '../errors.ts';
import type { JobChanges } from '../db/jobs.ts';
import type { JobRow, MisfirePolicy, OverlapPolicy } from '../db/rows.ts';
import {
  validateAutoPause,
  validateEndAt,
  validateExternalCall,
  validateJobId,
  validateName,
  validatePeriod,
  validateRetry,
  validateStartAt,
  validateTimeout,
} from '../input.ts';
import { validateCron, validateTimeZone } from '../scheduling/cron.ts';

export interface RetryPolicyInput {
  maxAttempts?: number | null;
  backoffSeconds?: number | null;
  backoffFactor?: number | null;
  maxBackoffSeconds?: number | null;
}

export interface RetryPolicy {
  maxAttempts: number;
  backoffSeconds: number;
  backoffFactor: number;
  maxBackoffSeconds: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 1, backoffSeconds: 10, backoffFactor: 2, maxBackoffSeconds: 3600 };

/** The schedule and policy fields shared by createJob and updateJob (SPEC §3b). */
interface PolicyInput {
  period?: string | null;
  cron?: string | null;
  timeZone?: string | null;
  startAt?: Date | null;
  endAt?: Date | null;
  timeoutSeconds?: number | null;
  overlap?: OverlapPolicy | null;
  misfire?: MisfirePolicy | null;
  retry?: RetryPolicyInput | null;
  autoPauseAfterFailures?: number | null;
}

export interface CreateJobInput extends PolicyInput {
  id: string;
  name: string;
  externalCall: string;
  enabled?: boolean | null;
}

export interface UpdateJobInput extends PolicyInput {
  name?: string | null;
  externalCall?: string | null;
  enabled?: boolean | null;
}

/** The stored fields a definition sets: the row less its id, state and bookkeeping. */
export type Definition = Pick<
  JobRow,
  | 'name'
  | 'connectorId'
  | 'method'
  | 'periodSeconds'
  | 'cron'
  | 'timeZone'
  | 'endAt'
  | 'timeoutSeconds'
  | 'overlap'
  | 'misfire'
  | 'retryMaxAttempts'
  | 'retryBackoffSeconds'
  | 'retryBackoffFactor'
  | 'retryMaxBackoffSeconds'
  | 'autoPauseAfterFailures'
>;

/** A whole definition from createJob's input, every field left out taking its default; throws BAD_USER_INPUT. */
export function createDefinition(input: CreateJobInput): { id: string; enabled: boolean; startAt: Date | null; definition: Definition } {
  const id = validateJobId(input.id);
  const name = validateName(input.name);
  const call = validateExternalCall(input.externalCall);
  const kind = scheduleKind(input.period, input.cron, input.timeZone, null);
  const retry = retryFields({ ...DEFAULT_RETRY }, input.retry);
  return {
    id,
    enabled: input.enabled ?? true,
    startAt: input.startAt == null ? null : validateStartAt(input.startAt),
    definition: {
      name,
      ...call,
      ...kind,
      endAt: input.endAt == null ? null : validateEndAt(input.endAt),
      timeoutSeconds: input.timeoutSeconds == null ? null : validateTimeout(input.timeoutSeconds),
      overlap: input.overlap ?? 'SKIP',
      misfire: input.misfire ?? 'RUN_ONCE',
      ...retry,
      autoPauseAfterFailures: input.autoPauseAfterFailures == null ? null : validateAutoPause(input.autoPauseAfterFailures),
    },
  };
}

/**
 * The fields updateJob's input changes, validated: a field left out keeps its value; `null`
 * restores a default where one exists (timeoutSeconds, endAt, retry, autoPauseAfterFailures).
 */
export function updateDefinition(current: Definition, input: UpdateJobInput): Partial<Definition> {
  const changes: Partial<Definition> = {};
  if (input.name != null) changes.name = validateName(input.name);
  if (input.externalCall != null) Object.assign(changes, validateExternalCall(input.externalCall));
  if (input.period != null || input.cron != null || input.timeZone !== undefined)
    Object.assign(changes, scheduleKind(input.period, input.cron, input.timeZone, current));
  if (input.endAt !== undefined) changes.endAt = input.endAt === null ? null : validateEndAt(input.endAt);
  if (input.timeoutSeconds !== undefined)
    changes.timeoutSeconds = input.timeoutSeconds === null ? null : validateTimeout(input.timeoutSeconds);
  if (input.overlap != null) changes.overlap = input.overlap;
  if (input.misfire != null) changes.misfire = input.misfire;
  if (input.retry !== undefined) Object.assign(changes, retryFields({ ...DEFAULT_RETRY }, input.retry));
  if (input.autoPauseAfterFailures !== undefined)
    changes.autoPauseAfterFailures = input.autoPauseAfterFailures === null ? null : validateAutoPause(input.autoPauseAfterFailures);
  return changes;
}

/** The fields of `changes` whose value differs from the row's: resending a value is no change. */
export function onlyChanged(job: JobRow, changes: Partial<Definition>): JobChanges {
  const same = (a: unknown, b: unknown) => (a instanceof Date && b instanceof Date ? a.getTime() === b.getTime() : a === b);
  return Object.fromEntries(Object.entries(changes).filter(([key, value]) => !same(value, job[key as keyof JobRow])));
}

/**
 * A period or a cron with its zone, exactly one (SPEC §3b, field `cron`). On an update the
 * current kind carries on: a zone alone changes a cron job's zone; a cron switches a period job
 * to cron, a period switches it back.
 */
function scheduleKind(
  period: string | null | undefined,
  cron: string | null | undefined,
  timeZone: string | null | undefined,
  current: Pick<Definition, 'periodSeconds' | 'cron' | 'timeZone'> | null,
): Pick<Definition, 'periodSeconds' | 'cron' | 'timeZone'> {
  if (period != null && cron != null) throw badInput('cron', 'A job has either a period or a cron, not both.');
  const isCron = cron != null || (period == null && current?.cron != null);
  if (!isCron) {
    if (period == null && current === null) throw badInput('cron', 'A job needs either a period or a cron.');
    if (timeZone != null) throw badInput('timeZone', 'timeZone applies to cron jobs only; this job has a period.');
    return { periodSeconds: period == null ? current!.periodSeconds : validatePeriod(period), cron: null, timeZone: null };
  }
  return {
    periodSeconds: null,
    cron: cron == null ? current!.cron : validateCron(cron),
    // A new cron keeps a cron job's zone; a period job switched to cron starts in UTC.
    timeZone: timeZone == null ? (current?.cron != null ? (current.timeZone ?? 'UTC') : 'UTC') : validateTimeZone(timeZone),
  };
}

function retryFields(
  base: RetryPolicy,
  input: RetryPolicyInput | null | undefined,
): Pick<Definition, 'retryMaxAttempts' | 'retryBackoffSeconds' | 'retryBackoffFactor' | 'retryMaxBackoffSeconds'> {
  const policy = input == null ? base : validateRetry({ ...base, ...(withoutNulls(input) as Partial<RetryPolicy>) });
  return {
    retryMaxAttempts: policy.maxAttempts,
    retryBackoffSeconds: policy.backoffSeconds,
    retryBackoffFactor: policy.backoffFactor,
    retryMaxBackoffSeconds: policy.maxBackoffSeconds,
  };
}

const withoutNulls = <T extends object>(value: T): Partial<T> =>
  Object.fromEntries(Object.entries(value).filter(([, v]) => v != null)) as Partial<T>;

/** A row's retry policy, as the API shows it. */
export function retryOf(
  job: Pick<JobRow, 'retryMaxAttempts' | 'retryBackoffSeconds' | 'retryBackoffFactor' | 'retryMaxBackoffSeconds'>,
): RetryPolicy {
  return {
    maxAttempts: job.retryMaxAttempts,
    backoffSeconds: job.retryBackoffSeconds,
    backoffFactor: job.retryBackoffFactor,
    maxBackoffSeconds: job.retryMaxBackoffSeconds,
  };
}

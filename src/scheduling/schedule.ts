/**
 * A job's due times, whatever kind of schedule makes them (SPEC §3 and §3b): a fixed-rate grid
 * `anchor + k·period`, or a cron pattern in a time zone; either one bounded by `endAt`. Pure
 * functions over epoch milliseconds: the claim, the change accounting, the preview and the
 * what-if all ask here, so every rule about due times is decided in one place.
 */
import type { JobRow } from '../db/rows.ts';
import { type CronDue, cronCountBetween, cronLastBetween, cronNextAfter } from './cron.ts';
import { type Claim, firstGridPointAfter, initialSchedule, planClaim as planGridClaim } from './grid.ts';

export interface DueRule {
  /** A period job's grid: anchor + k·period. */
  periodMs: number | null;
  cron: string | null;
  timeZone: string | null;
  /** The grid's anchor; on a cron job, the instant before which it has no due time (its start). */
  anchorMs: number;
  /** No due time after it; null: none. */
  endMs: number | null;
}

/** A job row's rule. */
export function ruleOf(job: Pick<JobRow, 'periodSeconds' | 'cron' | 'timeZone' | 'anchorAt' | 'endAt'>): DueRule {
  return {
    periodMs: job.periodSeconds === null ? null : job.periodSeconds * 1000,
    cron: job.cron,
    timeZone: job.cron === null ? null : (job.timeZone ?? 'UTC'),
    anchorMs: job.anchorAt.getTime(),
    endMs: job.endAt?.getTime() ?? null,
  };
}

export function sameRule(a: DueRule, b: DueRule): boolean {
  return a.periodMs === b.periodMs && a.cron === b.cron && a.timeZone === b.timeZone && a.anchorMs === b.anchorMs && a.endMs === b.endMs;
}

const cronOf = (rule: DueRule) => ({ cron: rule.cron!, timeZone: rule.timeZone ?? 'UTC' });
const withinEnd = (rule: DueRule, ms: number | null): number | null =>
  ms === null || (rule.endMs !== null && ms > rule.endMs) ? null : ms;

/** The first due time strictly after `afterMs`; null when there is none (past `endAt`). */
export function firstDueAfter(rule: DueRule, afterMs: number): number | null {
  if (rule.periodMs !== null) return withinEnd(rule, firstGridPointAfter(rule.anchorMs, rule.periodMs, afterMs));
  // A cron job has no due time before its start (`anchorMs`, inclusive).
  const from = Math.max(afterMs, rule.anchorMs - 1);
  return withinEnd(rule, cronNextAfter(cronOf(rule), from)?.atMs ?? null);
}

/**
 * Where a new or rescheduled job starts: its anchor and first due time. A period job follows
 * `initialSchedule` (SPEC §3); a cron job's first due time is its first instant at or after
 * `startAt`, or after now.
 */
export function initialDue(
  rule: Omit<DueRule, 'anchorMs'>,
  nowMs: number,
  startAtMs: number | null,
): { anchorMs: number; nextDueMs: number | null } {
  if (rule.periodMs !== null) {
    const { anchorMs, nextDueMs } = initialSchedule(rule.periodMs, nowMs, startAtMs);
    return { anchorMs, nextDueMs: withinEnd({ ...rule, anchorMs }, nextDueMs) };
  }
  const anchorMs = startAtMs ?? nowMs;
  return { anchorMs, nextDueMs: firstDueAfter({ ...rule, anchorMs }, Math.max(nowMs, anchorMs - 1)) };
}

/**
 * Claims every overdue due time of a job at once (SPEC §3 coalescing): the latest due time at
 * or before now stands for them all, `missed` counts the others; the next due time follows it
 * (null when the job has none left). Null when nothing is due yet.
 */
export function planClaim(
  rule: DueRule,
  nextDueMs: number,
  nowMs: number,
): (Omit<Claim, 'nextDueMs'> & { nextDueMs: number | null }) | null {
  if (nowMs < nextDueMs) return null;
  const until = rule.endMs === null ? nowMs : Math.min(nowMs, rule.endMs);
  if (rule.periodMs !== null) {
    const claim = planGridClaim(nextDueMs, rule.periodMs, Math.max(until, nextDueMs));
    return claim && { ...claim, nextDueMs: withinEnd(rule, claim.nextDueMs) };
  }
  // On time (the usual case): the next instant lies ahead, and one cron evaluation answers it all.
  const following = firstDueAfter(rule, nextDueMs);
  if (following === null || following > until) return { scheduledMs: nextDueMs, missed: 0, nextDueMs: following };
  const spec = cronOf(rule);
  const count = cronCountBetween(spec, nextDueMs, until);
  const scheduledMs = count <= 1 ? nextDueMs : cronLastBetween(spec, nextDueMs, until)!.atMs;
  return { scheduledMs, missed: Math.max(0, count - 1), nextDueMs: firstDueAfter(rule, scheduledMs) };
}

/** How many due times lie in [fromMs, toMs], both inclusive. */
export function countDue(rule: DueRule, fromMs: number, toMs: number): number {
  const to = rule.endMs === null ? toMs : Math.min(toMs, rule.endMs);
  if (rule.periodMs !== null) {
    const first = firstDueAfter(rule, fromMs - 1);
    if (first === null || first > to) return 0;
    return Math.floor((to - first) / rule.periodMs) + 1;
  }
  const from = Math.max(fromMs, rule.anchorMs);
  return from > to ? 0 : cronCountBetween(cronOf(rule), from, to);
}

/** The first due time in [fromMs, toMs], both inclusive; null when there is none. */
export function firstDueIn(rule: DueRule, fromMs: number, toMs: number): number | null {
  const first = firstDueAfter(rule, fromMs - 1);
  return first !== null && first <= toMs ? first : null;
}

/** The last due time in [fromMs, toMs], both inclusive; null when there is none. */
export function lastDueIn(rule: DueRule, fromMs: number, toMs: number): number | null {
  const to = rule.endMs === null ? toMs : Math.min(toMs, rule.endMs);
  if (rule.periodMs !== null) {
    const first = firstDueIn(rule, fromMs, to);
    return first === null ? null : first + Math.floor((to - first) / rule.periodMs) * rule.periodMs;
  }
  const from = Math.max(fromMs, rule.anchorMs);
  return from > to ? null : (cronLastBetween(cronOf(rule), from, to)?.atMs ?? null);
}

export interface PlannedDue {
  atMs: number;
  dst: CronDue['dst'];
}

/** The next `count` due times strictly after `afterMs`, for a preview. */
export function nextDueTimes(rule: DueRule, afterMs: number, count: number): PlannedDue[] {
  const planned: PlannedDue[] = [];
  let after = afterMs;
  while (planned.length < count) {
    const next =
      rule.periodMs !== null
        ? firstDueAfter(rule, after)
        : (() => {
            const due = cronNextAfter(cronOf(rule), Math.max(after, rule.anchorMs - 1));
            return due && withinEnd(rule, due.atMs) !== null ? due : null;
          })();
    if (next === null) break;
    const due = typeof next === 'number' ? { atMs: next, dst: null } : next;
    planned.push(due);
    after = due.atMs;
  }
  return planned;
}

/**
 * The timeout a run gets when its job sets none: the smaller of one hour and the period (SPEC
 * §3), or, on a cron job, the interval from the run's due time to the next.
 */
export function defaultTimeoutMs(rule: DueRule, dueMs: number): number {
  const hour = 3_600_000;
  if (rule.periodMs !== null) return Math.min(rule.periodMs, hour);
  const next = cronNextAfter(cronOf(rule), dueMs)?.atMs ?? null;
  return next === null ? hour : Math.min(hour, next - dueMs);
}

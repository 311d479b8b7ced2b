/**
 * What-if (SPEC §3b, `simulateDowntime`): what an outage over a window would do to a job under
 * its policies, had the service come back at the window's end, running nothing. Pure functions
 * over epoch milliseconds, asking schedule.ts for the due times as the claim does.
 */
import type { MisfirePolicy } from '../db/rows.ts';
import { badInput } from '../errors.ts';
import { countDue, type DueRule, firstDueAfter, firstDueIn, lastDueIn } from './schedule.ts';

/** The longest window simulateDowntime takes: a leap year. */
export const MAX_WINDOW_MS = 366 * 86_400_000;

/** A window [from, to) of at most 366 days, `from` before `to`; BAD_USER_INPUT on field `to` otherwise. */
export function validateWindow(fromMs: number, toMs: number): void {
  if (!(fromMs < toMs)) throw badInput('to', '`to` must be later than `from`.');
  if (toMs - fromMs > MAX_WINDOW_MS) throw badInput('to', 'The window from `from` to `to` may be at most 366 days long.');
}

export interface DowntimeImpact {
  /** The job's due times in the window. */
  dueTimes: number;
  /** The runs that would start for them when the service comes back. */
  wouldRun: number;
  /** The due times that would get no run at all. */
  wouldSkip: number;
  firstDueMs: number;
  lastDueMs: number;
}

/** A job as the what-if reads it. */
export interface SimulatedJob {
  rule: DueRule;
  misfire: MisfirePolicy;
  /**
   * The job's next due time: its rule's times before it are behind the job (claimed, accounted,
   * or never its own: the anchor of a grid started without `startAt` is no due time); null when
   * it has none left (past `endAt`).
   */
  nextDueMs: number | null;
}

/**
 * The impact on one job of an outage over [fromMs, toMs) ended at `toMs`; null when no due time
 * of the job lies in the window.
 *
 * Back at `toMs`, the claim finds the window's due times overdue, with one due exactly at `toMs`
 * if there is one. More than one overdue due time is a misfire (SPEC §3b: what section 3
 * coalesces): under RUN_ONCE they become one run, under SKIP one SKIPPED run, so every due time of
 * the window is skipped. A lone overdue due time is late by less than a period (the next one is
 * not yet due) and is no misfire: it runs under either policy, as the claim would run it.
 */
export function downtimeImpact(job: SimulatedJob, fromMs: number, toMs: number): DowntimeImpact | null {
  const { rule } = job;
  if (job.nextDueMs === null) return null;
  const firstMs = Math.max(fromMs, job.nextDueMs);
  const lastMs = toMs - 1;
  const dueTimes = firstMs > lastMs ? 0 : countDue(rule, firstMs, lastMs);
  if (dueTimes === 0) return null;
  const overdue = dueTimes + (firstDueAfter(rule, lastMs) === toMs ? 1 : 0);
  const skipped = job.misfire === 'SKIP' && overdue > 1;
  return {
    dueTimes,
    wouldRun: skipped ? 0 : 1,
    wouldSkip: skipped ? dueTimes : 0,
    firstDueMs: firstDueIn(rule, firstMs, lastMs)!,
    lastDueMs: lastDueIn(rule, firstMs, lastMs)!,
  };
}

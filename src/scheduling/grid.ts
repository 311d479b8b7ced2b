/**
 * The fixed-rate grid: due times lie on `anchor + k·period`. Pure functions over epoch
 * milliseconds, so the scheduler's decisions can be tested with literals.
 */

/** The first grid point strictly after `now` (the grid never yields `now` itself). */
export function firstGridPointAfter(anchorMs: number, periodMs: number, nowMs: number): number {
  if (nowMs < anchorMs) return anchorMs;
  const steps = Math.floor((nowMs - anchorMs) / periodMs) + 1;
  return anchorMs + steps * periodMs;
}

/**
 * Where a new or rescheduled job's first due time lies. Without `startAt` the anchor is `now`
 * and the first due time one period later; with `startAt` it is `startAt` itself, or the first
 * grid point after now when `startAt` is past.
 */
export function initialSchedule(periodMs: number, nowMs: number, startAtMs?: number | null): { anchorMs: number; nextDueMs: number } {
  if (startAtMs == null) return { anchorMs: nowMs, nextDueMs: nowMs + periodMs };
  if (startAtMs >= nowMs) return { anchorMs: startAtMs, nextDueMs: startAtMs };
  return { anchorMs: startAtMs, nextDueMs: firstGridPointAfter(startAtMs, periodMs, nowMs) };
}

export interface Claim {
  /** The due time the run stands for: the latest overdue grid point. */
  scheduledMs: number;
  /** How many earlier due times were coalesced into it. */
  missed: number;
  /** The job's next due time after this claim. */
  nextDueMs: number;
}

/**
 * Claims every overdue due time of a job at once: when more than one is due (the job fell a
 * period or more behind), they coalesce into one run on the latest of them and `missed` counts
 * the others. Returns null when nothing is due yet.
 */
export function planClaim(nextDueMs: number, periodMs: number, nowMs: number): Claim | null {
  if (nowMs < nextDueMs) return null;
  const missed = Math.floor((nowMs - nextDueMs) / periodMs);
  const scheduledMs = nextDueMs + missed * periodMs;
  return { scheduledMs, missed, nextDueMs: scheduledMs + periodMs };
}

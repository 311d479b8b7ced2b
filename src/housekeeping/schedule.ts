// When the daily housekeeping is due: plain functions of a time and HOUSEKEEPING_AT.

const DAY_MS = 86_400_000;

/** A time of day in UTC, as HOUSEKEEPING_AT gives it. */
export interface TimeOfDay {
  hour: number;
  minute: number;
}

/** `HH:MM` (or `H:MM`), 00:00 to 23:59, or null. */
export function parseTimeOfDay(text: string): TimeOfDay | null {
  const match = /^(\d{1,2}):(\d{2})$/.exec(text.trim());
  if (!match) return null;
  const hour = Number(match[1]);
  const minute = Number(match[2]);
  return hour <= 23 && minute <= 59 ? { hour, minute } : null;
}

/** `HH:MM`, for messages. */
export const formatTimeOfDay = ({ hour, minute }: TimeOfDay): string =>
  `${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`;

/** One day's housekeeping: its UTC date (the key a cluster claims) and the time it is due. */
export interface HousekeepingDay {
  day: string;
  dueMs: number;
}

/**
 * The latest housekeeping due at or before `nowMs`: today's if `at` has passed, else
 * yesterday's. An instance that was down at the time, or started later, still finds the day's
 * housekeeping due, and does it unless another instance has.
 */
export function latestDue(nowMs: number, at: TimeOfDay): HousekeepingDay {
  const midnight = Math.floor(nowMs / DAY_MS) * DAY_MS;
  let dueMs = midnight + (at.hour * 60 + at.minute) * 60_000;
  if (dueMs > nowMs) dueMs -= DAY_MS;
  return { day: new Date(dueMs).toISOString().slice(0, 10), dueMs };
}

/** The housekeeping after `day`'s: the same time, the next day. */
export const nextDay = (day: HousekeepingDay): number => day.dueMs + DAY_MS;

/** Pause before trying again after the `failures`-th failure in a row: 1, 2, 4 … up to 30 minutes. */
export const retryDelayMs = (failures: number): number => Math.min(60_000 * 2 ** Math.max(0, failures - 1), 30 * 60_000);

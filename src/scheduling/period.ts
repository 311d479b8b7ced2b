import { badInput } from '../errors.ts';

/** A period may be at most a leap year long (SPEC §2). */
export const MAX_PERIOD_HOURS = 8784;

const PERIOD_PATTERN = /^(\d+):(\d{1,2}):(\d{1,2})$/;

/**
 * Parses `h:m:s` into seconds. Hours ≥ 0 (at most 8784), minutes and seconds 0–59 with one or
 * two digits, total > 0. Throws BAD_USER_INPUT on the `period` field otherwise.
 */
export function parsePeriod(text: string, field = 'period'): number {
  const match = PERIOD_PATTERN.exec(text.trim());
  if (!match) {
    throw badInput(field, `Period "${text}" is not of the form h:m:s (e.g. 0:0:30, 1:00:00).`);
  }
  const [hours, minutes, seconds] = [match[1], match[2], match[3]].map(Number) as [number, number, number];
  if (hours > MAX_PERIOD_HOURS) throw badInput(field, `Period hours must be at most ${MAX_PERIOD_HOURS}.`);
  if (minutes > 59) throw badInput(field, 'Period minutes must be between 0 and 59.');
  if (seconds > 59) throw badInput(field, 'Period seconds must be between 0 and 59.');
  const total = hours * 3600 + minutes * 60 + seconds;
  if (total <= 0) throw badInput(field, 'Period must be longer than zero.');
  return total;
}

/** Formats seconds as the normalised `H:MM:SS` the API returns. */
export function formatPeriod(totalSeconds: number): string {
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return `${hours}:${String(minutes).padStart(2, '0')}:${String(seconds).padStart(2, '0')}`;
}

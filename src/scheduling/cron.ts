/**
 * Cron schedules in a time zone (SPEC §3b), as pure functions over epoch milliseconds.
 *
 * Croner parses the pattern and walks the calendar, but only ever on the *wall-clock* timeline
 * (local time written as if it were UTC, `utcOffset: 0`), where every day has 24 hours and no
 * time happens twice. Each matching wall time is then mapped to the zone's instants here, so the
 * daylight-saving rules are ours and hold for every pattern, steps included:
 * - a wall time with one instant runs at it;
 * - a wall time with two (fall-back overlap) runs at the first, `FIRST_OF_REPEATED`;
 * - a wall time with none (spring-forward gap) runs at the transition, the first instant after
 *   the gap, `SHIFTED_FROM_GAP`; every gap time lands on that one instant, and so does the wall
 *   time that ends the gap (03:00 when 02:00 → 03:00), so they merge into one due time, whose
 *   `dst` is null when that end time is itself a time of the pattern.
 * The mapping never decreases, so the due times are the matching wall times in order, with
 * those merges: none runs twice, none is lost.
 *
 * Zone offsets come from Intl, sampled once per UTC day (cached) with a binary search for the
 * instant of a change. Two assumptions: a zone changes its offset at most once per UTC day (two
 * changes that cancel out within one day would go unseen), and no offset exceeds ±18 h.
 * Dates are served up to the year 3000, where croner stops.
 */
import { Cron, CronPattern } from 'croner';
import { badInput } from '../errors.ts';

export interface CronSpec {
  cron: string;
  timeZone: string;
}
export type DstAdjustment = 'SHIFTED_FROM_GAP' | 'FIRST_OF_REPEATED';
export interface CronDue {
  atMs: number;
  dst: DstAdjustment | null;
}

const SECOND = 1000;
const DAY = 86_400_000;
/** Wider than any UTC offset a zone has had, so every instant of a wall time lies within it. */
const OFFSET_REACH = 18 * 3_600_000;
/** How far cronNextAfter looks: ten years, so 29 February is found across the skipped 2100. */
const SEARCH_SPAN = 10 * 366 * DAY;
const MAX_CRON_LENGTH = 256;

// ---------------------------------------------------------------------------------------------
// The pattern, on the wall-clock timeline

/** The same options everywhere: 5 or 6 fields, Vixie's OR of the day fields, wall-clock time. */
const CRON_OPTIONS = { mode: '5-or-6-parts', domAndDow: false, utcOffset: 0 } as const;

interface Compiled {
  cron: Cron;
  /** How many of the pattern's times of day lie before second-of-day `s` (0–86400). */
  timesBefore(s: number): number;
}

const compiled = new Map<string, Compiled>();

/**
 * The time fields never depend on the day, so one matching day holds the same times as any
 * other: counting needs only these prefix sums over croner's parsed hour/minute/second flags.
 */
function timesOfDay(pattern: CronPattern): (s: number) => number {
  const prefix = (flags: number[]) => {
    const sums = [0];
    for (const flag of flags) sums.push(sums.at(-1)! + (flag ? 1 : 0));
    return sums;
  };
  const [h, m, s] = [prefix(pattern.hour), prefix(pattern.minute), prefix(pattern.second)];
  const perHour = m[60]! * s[60]!;
  return (at) => {
    const hour = Math.floor(at / 3600);
    if (hour >= 24) return h[24]! * perHour;
    const minute = Math.floor((at % 3600) / 60);
    const before = h[hour]! * perHour;
    if (!pattern.hour[hour]) return before;
    return before + m[minute]! * s[60]! + (pattern.minute[minute] ? s[at % 60]! : 0);
  };
}

function compile(text: string, field: string): Compiled {
  const cached = compiled.get(text);
  if (cached) return cached;
  const fields = text.trim().split(/\s+/);
  if (fields.length === 7) {
    throw badInput(field, `Cron "${text}" has 7 fields; a year field is not accepted: use 5 fields, or 6 with a leading seconds field.`);
  }
  // Croner's "+" makes the day fields AND; SPEC §3b promises Vixie's OR whenever both are set.
  if (fields.length >= 5 && fields.at(-1)!.startsWith('+')) {
    throw badInput(field, `Cron "${text}": the "+" day-of-week modifier is not accepted; a day matches either day field.`);
  }
  let cron: Cron;
  let pattern: CronPattern;
  try {
    // A copy: croner fills in its defaults on the options object it is given.
    cron = new Cron(text, { ...CRON_OPTIONS });
    pattern = new CronPattern(text, undefined, { mode: CRON_OPTIONS.mode });
  } catch (error) {
    const reason = (error instanceof Error ? error.message : String(error)).replace(/^CronPattern: /, '');
    throw badInput(field, `Cron "${text}" is not valid: ${reason}`);
  }
  // A fixed reference keeps validation pure; the calendar repeats every 400 years anyway.
  if (cron.nextRun(new Date(Date.UTC(2000, 0, 1))) === null) throw badInput(field, `Cron "${text}" never matches any date.`);
  const entry: Compiled = { cron, timesBefore: timesOfDay(pattern) };
  if (compiled.size >= 500) compiled.delete(compiled.keys().next().value!);
  compiled.set(text, entry);
  return entry;
}

/** The first matching wall time (a whole second) strictly after `wall`, or null. */
const nextWall = (c: Compiled, wall: number): number | null => c.cron.nextRun(new Date(wall))?.getTime() ?? null;

/** How many whole-second wall times in [lo, hi] match: one croner step per matching day. */
function matchingWalls(c: Compiled, lo: number, hi: number): number {
  const first = Math.ceil(lo / SECOND);
  const last = Math.floor(hi / SECOND);
  let count = 0;
  for (let cursor = (first - 1) * SECOND; ;) {
    const wall = nextWall(c, cursor);
    if (wall === null || wall > last * SECOND) return count;
    const dayStart = Math.floor(wall / DAY) * 86_400;
    const from = Math.max(first, dayStart) - dayStart;
    const to = Math.min(last, dayStart + 86_399) - dayStart;
    count += c.timesBefore(to + 1) - c.timesBefore(from);
    cursor = (dayStart + 86_399) * SECOND;
  }
}

// ---------------------------------------------------------------------------------------------
// The zone: offsets and their changes

interface Transition {
  /** The first instant with the new offset. */
  at: number;
  before: number;
  after: number;
}
interface ZoneDay {
  offset: number;
  change: Transition | null;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
const zoneDays = new Map<string, Map<number, ZoneDay>>();

function formatter(zone: string): Intl.DateTimeFormat {
  let format = formatters.get(zone);
  if (!format) {
    const fields = { year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric' } as const;
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', ...fields });
    formatters.set(zone, format);
  }
  return format;
}

/** The zone's offset at an instant, from Intl (to the second: old local mean times have seconds). */
function intlOffset(zone: string, at: number): number {
  const whole = Math.floor(at / SECOND) * SECOND;
  const part: Record<string, number> = {};
  for (const { type, value } of formatter(zone).formatToParts(whole)) part[type] = Number(value);
  const wall = Date.UTC(part['year']!, part['month']! - 1, part['day']!, part['hour']!, part['minute']!, part['second']!);
  return wall - whole;
}

/** The offset at the start of UTC day `day`, and the one change within (day, day + 1], if any. */
function zoneDay(zone: string, day: number): ZoneDay {
  let days = zoneDays.get(zone);
  if (!days) zoneDays.set(zone, (days = new Map()));
  let info = days.get(day);
  if (info) return info;
  const start = day * DAY;
  const offset = intlOffset(zone, start);
  const end = intlOffset(zone, start + DAY);
  let change: Transition | null = null;
  if (end !== offset) {
    // Changes happen on whole seconds: bisect down to the first second with the new offset.
    let [lo, hi] = [start, start + DAY];
    while (hi - lo > SECOND) {
      const mid = lo + Math.floor((hi - lo) / 2 / SECOND) * SECOND;
      if (intlOffset(zone, mid) === offset) lo = mid;
      else hi = mid;
    }
    change = { at: hi, before: offset, after: end };
  }
  if (days.size >= 20_000) days.clear();
  days.set(day, (info = { offset, change }));
  return info;
}

function offsetAt(zone: string, at: number): number {
  const { offset, change } = zoneDay(zone, Math.floor(at / DAY));
  return change !== null && at >= change.at ? change.after : offset;
}

/** The offset changes at instants in [lo, hi], ascending. */
function transitionsBetween(zone: string, lo: number, hi: number): Transition[] {
  const found: Transition[] = [];
  for (let day = Math.floor(lo / DAY) - 1; day <= Math.floor(hi / DAY); day++) {
    const { change } = zoneDay(zone, day);
    if (change !== null && change.at >= lo && change.at <= hi) found.push(change);
  }
  return found;
}

interface Resolved extends CronDue {
  /** For a gap time: the wall time that ends the gap (it runs at the same instant). */
  gapEnd?: number;
}

/** The instant a wall time runs at, by the rules in the header. */
function resolveWall(zone: string, wall: number): Resolved {
  // Between changes the offset is constant, so each stretch offers one candidate instant,
  // wall − offset, which is real when it falls inside that stretch.
  const changes = transitionsBetween(zone, wall - OFFSET_REACH, wall + OFFSET_REACH);
  const instants: number[] = [];
  let [start, offset] = [-Infinity, offsetAt(zone, wall - OFFSET_REACH - 1)];
  for (const change of [...changes, null]) {
    const candidate = wall - offset;
    if (candidate >= start && (change === null || candidate < change.at)) instants.push(candidate);
    if (change === null) break;
    if (instants.length === 0 && wall >= change.at + change.before && wall < change.at + change.after) {
      return { atMs: change.at, dst: 'SHIFTED_FROM_GAP', gapEnd: change.at + change.after };
    }
    [start, offset] = [change.at, change.after];
  }
  return { atMs: instants[0]!, dst: instants.length > 1 ? 'FIRST_OF_REPEATED' : null };
}

/** The last wall time whose instant is at or before `at` (every later wall time runs after it). */
function lastWallAtOrBefore(zone: string, at: number): number {
  // In the second pass of a repeated hour, the wall times up to its end already ran in the first.
  for (const change of transitionsBetween(zone, at - OFFSET_REACH, at).reverse()) {
    if (change.before > change.after && at < change.at + (change.before - change.after)) return change.at + change.before - 1;
  }
  return at + offsetAt(zone, at);
}

/** The due times of matching wall times in (afterWall, lastWall], gap times merged. */
function* duesAfterWall(c: Compiled, zone: string, afterWall: number, lastWall: number): Generator<CronDue> {
  let pending: CronDue | null = null;
  for (let cursor = afterWall; ;) {
    const wall = nextWall(c, cursor);
    if (wall === null || wall > lastWall) break;
    const { gapEnd, ...due } = resolveWall(zone, wall);
    if (pending !== null && pending.atMs === due.atMs) {
      // The gap's end is a time of the pattern itself: the merged due time was not moved.
      pending.dst = due.dst;
    } else {
      if (pending !== null) yield pending;
      pending = due;
    }
    // Every other time in the gap lands on the same instant: skip to the gap's end.
    cursor = gapEnd === undefined ? wall : gapEnd - 1;
  }
  if (pending !== null) yield pending;
}

// ---------------------------------------------------------------------------------------------
// The API

/**
 * Validates a cron text and returns it trimmed: 5 fields (minute precision) or 6 (leading
 * seconds), with names, ranges, lists, steps, L, W, # and the nicknames (@hourly, @daily,
 * @midnight, @weekly, @monthly, @yearly, @annually). Throws BAD_USER_INPUT on `field` otherwise.
 */
export function validateCron(text: string, field = 'cron'): string {
  const trimmed = text.trim();
  if (trimmed === '') throw badInput(field, 'Cron must not be empty.');
  if (trimmed.length > MAX_CRON_LENGTH) throw badInput(field, `Cron must be at most ${MAX_CRON_LENGTH} characters long.`);
  compile(trimmed, field);
  return trimmed;
}

/** Validates an IANA zone name; returns it as given, with Intl's capitalisation ('utc' → 'UTC'). */
export function validateTimeZone(name: string, field = 'timeZone'): string {
  const trimmed = name.trim();
  // Intl also takes offsets such as "+02:00"; SPEC §3b asks for a zone name.
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(trimmed))
    throw badInput(field, `Unknown time zone "${name}": give an IANA name such as Europe/Berlin.`);
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: trimmed }).resolvedOptions().timeZone;
  } catch {
    throw badInput(field, `Unknown time zone "${name}": give an IANA name such as Europe/Berlin.`);
  }
  return resolved.toLowerCase() === trimmed.toLowerCase() ? resolved : trimmed;
}

/** The first due time strictly after `afterMs`; null if there is none within ten years. */
export function cronNextAfter(spec: CronSpec, afterMs: number): CronDue | null {
  const start = lastWallAtOrBefore(spec.timeZone, afterMs);
  const next = duesAfterWall(compile(spec.cron, 'cron'), spec.timeZone, start, start + SEARCH_SPAN).next();
  return next.done ? null : next.value;
}

/** The due times in [fromMs, toMs] (both inclusive), ascending, at most `limit`. */
export function cronDueBetween(spec: CronSpec, fromMs: number, toMs: number, limit: number): CronDue[] {
  const found: CronDue[] = [];
  if (toMs < fromMs || limit <= 0) return found;
  const c = compile(spec.cron, 'cron');
  const [start, last] = [lastWallAtOrBefore(spec.timeZone, fromMs - 1), lastWallAtOrBefore(spec.timeZone, toMs)];
  for (const due of duesAfterWall(c, spec.timeZone, start, last)) {
    found.push(due);
    if (found.length >= limit) break;
  }
  return found;
}

/** The last due time in [fromMs, toMs] (both inclusive), or null: one croner step back. */
export function cronLastBetween(spec: CronSpec, fromMs: number, toMs: number): CronDue | null {
  if (toMs < fromMs) return null;
  const c = compile(spec.cron, 'cron');
  // Croner lists runs strictly before its reference: + 1 takes in the last wall time itself.
  const wall = c.cron.previousRuns(1, new Date(lastWallAtOrBefore(spec.timeZone, toMs) + 1))[0]?.getTime();
  if (wall === undefined) return null;
  // A gap time found here means the wall time ending its gap does not match (it would be later).
  const { gapEnd: _gapEnd, ...due } = resolveWall(spec.timeZone, wall);
  return due.atMs >= fromMs ? due : null;
}

/**
 * How many due times lie in [fromMs, toMs], inclusive — exactly, without listing them: the
 * matching wall times, counted per local day with arithmetic, less the merges in each gap. The
 * cost is one croner step per matching local day plus one (cached) zone sample per UTC day,
 * whatever the number of due times: an every-second pattern over 30 days costs about 30 steps.
 */
export function cronCountBetween(spec: CronSpec, fromMs: number, toMs: number): number {
  if (toMs < fromMs) return 0;
  const c = compile(spec.cron, 'cron');
  const zone = spec.timeZone;
  let count = matchingWalls(c, lastWallAtOrBefore(zone, fromMs - 1) + 1, lastWallAtOrBefore(zone, toMs));
  for (const change of transitionsBetween(zone, fromMs, toMs)) {
    if (change.after <= change.before) continue;
    // The gap's times and the wall time that ends it all run at the change: one due time.
    const merged = matchingWalls(c, change.at + change.before, change.at + change.after);
    if (merged > 1) count -= merged - 1;
  }
  return count;
}

/** ISO 8601 in the zone, milliseconds always, the offset always numeric: `…T03:00:00.000+02:00`. */
export function formatLocalTime(atMs: number, timeZone: string): string {
  const offset = offsetAt(timeZone, atMs);
  const local = new Date(atMs + offset).toISOString().slice(0, -1);
  const size = Math.abs(offset) / SECOND;
  const [h, m, s] = [Math.floor(size / 3600), Math.floor((size % 3600) / 60), size % 60].map((n) => String(n).padStart(2, '0'));
  return `${local}${offset < 0 ? '-' : '+'}${h}:${m}${s === '00' ? '' : `:${s}`}`;
}

import type { Topic, TopicEvent } from './topics.ts';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; stay clear of the limit. */
export const MAX_NOTIFY_BYTES = 7900;

/** Where a too-large payload's row can be read back from. */
export interface RowRef {
  table: 'log_entries' | 'job_runs' | 'jobs';
  id: string;
}

/**
 * One notification. `seq` numbers an origin's notifications 1, 2, 3… in send order: a receiver
 * drops a number it has seen (a batch sent again after its reply was lost) and knows a gap when
 * one is skipped. A `lost` notification says why the origin's events up to `seq` may not all
 * reach the other instances (it gave up sending them, or could not publish one at all).
 */
export type WireMessage =
  | { origin: string; seq?: number; event: TopicEvent }
  | { origin: string; seq?: number; topic: Topic; ref: RowRef; at?: string }
  | { origin: string; seq: number; lost: string };

/** The keys of T (each member of a union) whose values are Dates, possibly null. */
type DateKeysOf<T> = T extends unknown ? { [K in keyof T]-?: [NonNullable<T[K]>] extends [Date] ? K : never }[keyof T] : never;
/** The rows a payload carries: its properties that are objects and not Dates. */
type RowsOf<T> = T extends unknown
  ? { [K in keyof T]-?: NonNullable<T[K]> extends Date ? never : NonNullable<T[K]> extends object ? NonNullable<T[K]> : never }[keyof T]
  : never;
type Payload = TopicEvent['payload'];

/**
 * JSON turns Dates into ISO strings; these keys of a payload and of the rows it carries turn them
 * back. Derived from the types both ways: a Date field added to a payload or row fails to compile
 * until it is listed here, and so does a listed key that is not a Date.
 */
const DATE_KEYS: Record<DateKeysOf<Payload> | DateKeysOf<RowsOf<Payload>>, true> = {
  at: true,
  anchorAt: true,
  nextDueAt: true,
  endAt: true,
  queuedDueAt: true,
  retryAt: true,
  retryScheduledAt: true,
  createdAt: true,
  updatedAt: true,
  scheduledAt: true,
  startedAt: true,
  finishedAt: true,
  leaseExpiresAt: true,
  cancelRequestedAt: true,
  openedAt: true,
  nextProbeAt: true,
};
const isDateKey = (key: string) => Object.hasOwn(DATE_KEYS, key);

/** Turns the date keys of `object` back into Dates, in place. */
function reviveDates(object: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(object)) if (typeof value === 'string' && isDateKey(key)) object[key] = new Date(value);
}

/**
 * Encodes an event for NOTIFY. A payload too large to send whole (a log entry with big
 * details) travels as a reference to its row, which the receiver reads back.
 */
export function encode(origin: string, event: TopicEvent, seq?: number): string {
  const whole = JSON.stringify({ origin, seq, event } satisfies WireMessage);
  if (Buffer.byteLength(whole) <= MAX_NOTIFY_BYTES) return whole;
  const ref = refOf(event);
  if (!ref) throw new Error(`event ${event.topic} is too large to notify and has no row to refer to`);
  const at = 'at' in event.payload && event.payload.at instanceof Date ? event.payload.at.toISOString() : undefined;
  return JSON.stringify({ origin, seq, topic: event.topic, ref, at } satisfies WireMessage);
}

/** The notification that says, in the place of notifications up to `seq`, why events were lost. */
export function encodeLost(origin: string, seq: number, reason: string): string {
  return JSON.stringify({ origin, seq, lost: reason } satisfies WireMessage);
}

/**
 * Parses a notification. Only the payload's own keys and those of the rows it carries are revived,
 * not keys inside a log entry's `details`: those are the operation's JSON (an `at: "soon"` there
 * stays a string, as it is on the instance that wrote it).
 */
export function decode(text: string): WireMessage {
  return revive(JSON.parse(text) as WireMessage);
}

function revive(message: WireMessage): WireMessage {
  if ('event' in message) {
    const payload = message.event.payload as Record<string, unknown>;
    reviveDates(payload);
    for (const value of Object.values(payload)) if (isObject(value)) reviveDates(value);
  }
  return message;
}

/**
 * Several notifications in one NOTIFY payload: a JSON array of their texts, in order. One NOTIFY
 * per event cost the database and every listener a notification each; a payload carries as many
 * as fit under MAX_NOTIFY_BYTES.
 */
export const pack = (texts: readonly string[]): string => (texts.length === 1 ? texts[0]! : `[${texts.join(',')}]`);

/** The notifications of a payload, one or packed (see `pack`), each decoded as `decode` does. */
export function decodeAll(text: string): WireMessage[] {
  return text.startsWith('[') ? (JSON.parse(text) as WireMessage[]).map(revive) : [decode(text)];
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

function refOf(event: TopicEvent): RowRef | null {
  switch (event.topic) {
    case 'log:added':
      return { table: 'log_entries', id: event.payload.entry.id };
    case 'run:started':
    case 'run:skipped':
    case 'run:finished':
      return { table: 'job_runs', id: event.payload.run.id };
    case 'job:created':
    case 'job:updated':
      return { table: 'jobs', id: event.payload.job.id };
    default:
      return null;
  }
}

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

const DATE_KEYS = new Set([
  'at',
  'anchorAt',
  'nextDueAt',
  'createdAt',
  'updatedAt',
  'scheduledAt',
  'startedAt',
  'finishedAt',
  'leaseExpiresAt',
  'cancelRequestedAt',
]);

/** JSON turns Dates into ISO strings; these keys turn them back. */
const revive = (key: string, value: unknown): unknown =>
  DATE_KEYS.has(key) && typeof value === 'string' ? new Date(value) : value;

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

export function decode(text: string): WireMessage {
  return JSON.parse(text, revive) as WireMessage;
}

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

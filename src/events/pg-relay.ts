import type { Logger } from 'pino';
import { type Clock, sleepFor } from '../clock.ts';
import type { Sql } from '../db/client.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { toError } from '../errors.ts';
import type { EventBus } from './bus.ts';
import type { TopicEvent } from './topics.ts';
import { decodeAll, encode, encodeLost, MAX_NOTIFY_BYTES, pack, type WireMessage } from './wire.ts';

export const EVENTS_CHANNEL = 'server_jobs_events';

/** Notifications per NOTIFY statement (packed into as few payloads as fit). */
const BATCH = 500;
/** How long a batch that cannot be sent is retried before it is given up (and its loss announced). */
const GIVE_UP_MS = 500;
/** The longest pause between two tries of sending while the database is away. */
const MAX_RETRY_MS = 2000;
/** How many other instances' notification numbers are remembered. */
const ORIGINS_KEPT = 1000;

interface Outgoing {
  seq: number;
  text: string;
  /** The text's length in UTF-8. */
  bytes: number;
  /** How many events it carries (a loss notice: how many it stands for). */
  events: number;
  /** A loss notice in the place of what was given up. */
  lost: boolean;
}

/**
 * Carries events between instances through PostgreSQL LISTEN/NOTIFY. Events published here are
 * numbered and sent in publish order, in batches, one batch at a time, so the order of one
 * instance's events survives (NOTIFY delivers in commit order). Received events are handed to
 * local subscribers in arrival order; this instance's own notifications are recognised by
 * `origin` and dropped.
 *
 * No event is lost silently (SPEC §6):
 * - A NOTIFY that fails is retried (a batch whose reply was lost may arrive twice: receivers drop
 *   numbers they have seen). One that still fails after GIVE_UP_MS is given up, and a loss notice
 *   goes out in its place, retried until it lands; receivers interrupt their subscriptions.
 * - A receiver that sees an origin's numbers skip ahead interrupts its subscriptions.
 * - NOTIFY keeps nothing for a listener that was away: after the listening connection comes
 *   back, the subscriptions open here are interrupted (EVENTS_INTERRUPTED) and `onResync` runs
 *   so the instance can re-read what it caches. Clients catch up from the runs and logEntries
 *   queries.
 * - `bus.lost` (this instance could not publish an event: a run's end committed with its reply
 *   lost until shutdown) sends a loss notice too.
 */
export class PgEventRelay {
  #queue: Outgoing[] = [];
  #seq = 0;
  #flushing: Promise<void> | null = null;
  #inbox: Promise<void> = Promise.resolve();
  /** Events in the inbox not yet delivered. */
  #waiting = 0;
  #unlisten: (() => Promise<void>) | null = null;
  #offPublish: (() => void) | null = null;
  #offLoss: (() => void) | null = null;
  #listens = 0;
  #stopped = false;
  /** Wakes a retry's pause at stop. */
  #halt = new AbortController();
  /** How every notification this instance sends begins (`encode` writes the origin first). */
  readonly #ownPrefix: string;
  /** And a payload of several of them (see `pack`). */
  readonly #ownPackedPrefix: string;
  /** Per other instance, the number of its last notification received. */
  #received = new Map<string, number>();

  constructor(
    private readonly deps: { sql: Sql; clock: Clock; bus: EventBus; log: Logger; origin: string; onResync?: () => void; giveUpMs?: number },
  ) {
    this.#ownPrefix = `${JSON.stringify({ origin: deps.origin }).slice(0, -1)},`;
    this.#ownPackedPrefix = `[${this.#ownPrefix}`;
  }

  /** How many times LISTEN was (re-)established: 1 after start, more after reconnects. */
  get listens(): number {
    return this.#listens;
  }

  async start(): Promise<void> {
    const { sql, bus, log } = this.deps;
    const subscription = await sql.listen(
      EVENTS_CHANNEL,
      (payload) => this.#receive(payload),
      () => {
        this.#listens++;
        if (this.#listens > 1) {
          log.warn('event listener reconnected; events sent while it was away were not received, subscriptions interrupted');
          // Numbering starts afresh: the gap while away is accounted for by this interruption.
          this.#received.clear();
          bus.interrupt('this instance lost its connection for other instances’ events');
          this.deps.onResync?.();
        }
      },
    );
    this.#unlisten = subscription.unlisten;
    this.#offPublish = bus.onPublish((event) => this.#send(event));
    this.#offLoss = bus.onLoss((reason) => this.#enqueueLoss(reason));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#offPublish?.();
    this.#offLoss?.();
    this.#halt.abort();
    await this.#flushing;
    await this.#unlisten?.().catch(() => {});
    await this.#inbox;
  }

  #send(event: TopicEvent): void {
    if (this.#stopped) return;
    const seq = ++this.#seq;
    let text: string;
    try {
      text = encode(this.deps.origin, event, seq);
    } catch (error) {
      this.deps.log.error({ err: toError(error), topic: event.topic }, 'event cannot be sent to other instances');
      text = encodeLost(this.deps.origin, seq, `an event (${event.topic}) could not be sent`);
    }
    this.#queue.push({ seq, text, bytes: Buffer.byteLength(text), events: 1, lost: false });
    this.#flushing ??= this.#flush();
  }

  #enqueueLoss(reason: string): void {
    const seq = ++this.#seq;
    const text = encodeLost(this.deps.origin, seq, reason);
    this.#queue.push({ seq, text, bytes: Buffer.byteLength(text), events: 0, lost: true });
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    const { sql, log } = this.deps;
    const giveUpMs = this.deps.giveUpMs ?? GIVE_UP_MS;
    let failures = 0;
    let failingSince = 0;
    while (this.#queue.length > 0) {
      const batch = this.#queue.slice(0, BATCH);
      try {
        // The payloads travel as one JSON array (a text parameter): a text[] parameter escaped
        // every quote of every payload in JavaScript, a tenth of this process's time under load.
        await sql`select pg_notify(${EVENTS_CHANNEL}, payload)
                  from json_array_elements_text(${JSON.stringify(packed(batch))}::text::json) with ordinality as t(payload, n) order by n`;
        this.#queue.splice(0, batch.length);
        if (failures > 0) log.info({ failures }, 'sending events to other instances works again');
        failures = 0;
        continue;
      } catch (error) {
        if (failures === 0) {
          failingSince = this.deps.clock.now();
          log.warn({ err: toError(error), events: batch.length }, 'sending events to other instances failed; retrying');
        }
        failures++;
      }
      const onlyNotice = this.#queue.length === 1 && this.#queue[0]!.lost;
      if (this.#stopped && onlyNotice) {
        log.error('could not tell other instances that events were lost; the instance is stopping');
        this.#queue.length = 0;
        break;
      }
      const wait = Math.min(MAX_RETRY_MS, 25 * 2 ** failures);
      // Giving up: the receivers are told (one notice for all of it) rather than kept waiting.
      if (this.#stopped || this.deps.clock.now() + wait - failingSince >= giveUpMs) {
        if (!onlyNotice) {
          this.#collapse();
          continue;
        }
      }
      await sleepFor(this.deps.clock, wait, this.#halt.signal);
    }
    this.#flushing = null;
  }

  /** Replaces what is queued by one loss notice, numbered as the last of it. */
  #collapse(): void {
    const last = this.#queue.at(-1)!;
    const events = this.#queue.reduce((sum, m) => sum + m.events, 0);
    const text = encodeLost(this.deps.origin, last.seq, `${events} event(s) could not be sent`);
    this.deps.log.error({ events }, 'gave up sending events to other instances; their subscriptions will be interrupted');
    this.#queue = [{ seq: last.seq, text, bytes: Buffer.byteLength(text), events, lost: true }];
  }

  #receive(payload: string): void {
    const { bus, log } = this.deps;
    // This instance's own notifications come back too: recognised by their first key, unread.
    if (payload.startsWith(this.#ownPrefix) || payload.startsWith(this.#ownPackedPrefix)) return;
    let messages: WireMessage[];
    try {
      messages = decodeAll(payload);
    } catch (error) {
      log.warn({ err: toError(error) }, 'undecodable event notification');
      bus.interrupt('an event notification could not be read');
      return;
    }
    for (const message of messages) this.#accept(message);
  }

  #accept(message: WireMessage): void {
    const { bus, log } = this.deps;
    if (message.origin === this.deps.origin) return;
    if (typeof message.seq === 'number') {
      const last = this.#received.get(message.origin);
      // Sent again after its reply was lost: delivered already.
      if (last !== undefined && message.seq <= last) return;
      this.#received.delete(message.origin);
      this.#received.set(message.origin, message.seq);
      if (this.#received.size > ORIGINS_KEPT) this.#received.delete(this.#received.keys().next().value!);
      if ('lost' in message) {
        log.warn({ reason: message.lost }, 'another instance lost events; subscriptions interrupted');
        bus.interrupt(`another instance lost events: ${message.lost}`);
        return;
      }
      if (last !== undefined && message.seq > last + 1) {
        log.warn({ missing: message.seq - last - 1 }, 'notifications from another instance went missing; subscriptions interrupted');
        bus.interrupt('events from another instance went missing');
      }
    }
    if ('lost' in message) return;
    // Nothing waits in the inbox: a whole event is delivered at once, without a promise of its own.
    if ('event' in message && this.#waiting === 0) {
      try {
        bus.deliver(message.event);
      } catch (error) {
        log.error({ err: toError(error) }, 'handling an event from another instance failed; subscriptions interrupted');
        bus.interrupt('an event from another instance could not be delivered');
      }
      return;
    }
    // One at a time, so an event read back from its row is not overtaken by the next.
    this.#waiting++;
    this.#inbox = this.#inbox.then(async () => {
      try {
        const event = 'event' in message ? message.event : await this.#readBack(message);
        if (event) bus.deliver(event);
      } catch (error) {
        log.error({ err: toError(error) }, 'handling an event from another instance failed; subscriptions interrupted');
        bus.interrupt('an event from another instance could not be read back');
      } finally {
        this.#waiting--;
      }
    });
  }

  async #readBack(message: Extract<WireMessage, { ref: unknown }>): Promise<TopicEvent | null> {
    const { sql } = this.deps;
    const at = new Date(message.at ?? this.deps.clock.now());
    const { table, id } = message.ref;
    if (table === 'log_entries') {
      const [entry] = await sql<LogRow[]>`select * from log_entries where id = ${id}`;
      return entry ? { topic: 'log:added', payload: { entry } } : null;
    }
    if (table === 'job_runs') {
      const [run] = await sql<RunRow[]>`select * from job_runs where id = ${id}`;
      const topic = message.topic as 'run:started' | 'run:skipped' | 'run:finished';
      return run ? ({ topic, payload: { at, run } } as TopicEvent) : null;
    }
    const [job] = await sql<JobRow[]>`select * from jobs where id = ${id}`;
    const topic = message.topic as 'job:created' | 'job:updated';
    return job ? ({ topic, payload: { at, job } } as TopicEvent) : null;
  }
}

/** The texts of a batch packed into as few payloads as fit under MAX_NOTIFY_BYTES, in order. */
function packed(batch: readonly Outgoing[]): string[] {
  const payloads: string[] = [];
  let texts: string[] = [];
  let bytes = 2;
  for (const message of batch) {
    if (texts.length > 0 && bytes + message.bytes + 1 > MAX_NOTIFY_BYTES) {
      payloads.push(pack(texts));
      texts = [];
      bytes = 2;
    }
    texts.push(message.text);
    bytes += message.bytes + 1;
  }
  if (texts.length > 0) payloads.push(pack(texts));
  return payloads;
}

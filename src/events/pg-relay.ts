import type { Logger } from 'pino';
import type { Sql } from '../db/client.ts';
import type { JobRow, LogRow, RunRow } from '../db/rows.ts';
import { toError } from '../errors.ts';
import type { EventBus } from './bus.ts';
import type { TopicEvent } from './topics.ts';
import { decode, encode, type WireMessage } from './wire.ts';

export const EVENTS_CHANNEL = 'server_jobs_events';

/**
 * Carries events between instances through PostgreSQL LISTEN/NOTIFY. Events published here are
 * sent in publish order, in batches, one batch at a time, so the order of one instance's events
 * survives (NOTIFY delivers in commit order). Received events are handed to local subscribers
 * in arrival order; this instance's own notifications are recognised by `origin` and dropped.
 *
 * NOTIFY keeps nothing for a listener that was away: after the listening connection comes
 * back, `onResync` runs so the instance can re-read what it caches, and clients catch up from
 * the runs and logEntries queries.
 */
export class PgEventRelay {
  #queue: string[] = [];
  #flushing: Promise<void> | null = null;
  #inbox: Promise<void> = Promise.resolve();
  #unlisten: (() => Promise<void>) | null = null;
  #offPublish: (() => void) | null = null;
  #listens = 0;
  #stopped = false;

  constructor(
    private readonly deps: { sql: Sql; bus: EventBus; log: Logger; origin: string; onResync?: () => void },
  ) {}

  /** How many times LISTEN was (re-)established: 1 after start, more after reconnects. */
  get listens(): number {
    return this.#listens;
  }

  async start(): Promise<void> {
    const { sql, bus } = this.deps;
    const subscription = await sql.listen(
      EVENTS_CHANNEL,
      (payload) => this.#receive(payload),
      () => {
        this.#listens++;
        if (this.#listens > 1) {
          this.deps.log.warn('event listener reconnected; events sent while it was away were not received');
          this.deps.onResync?.();
        }
      },
    );
    this.#unlisten = subscription.unlisten;
    this.#offPublish = bus.onPublish((event) => this.#send(event));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#offPublish?.();
    await this.#flushing;
    await this.#unlisten?.().catch(() => {});
    await this.#inbox;
  }

  #send(event: TopicEvent): void {
    if (this.#stopped) return;
    try {
      this.#queue.push(encode(this.deps.origin, event));
    } catch (error) {
      this.deps.log.error({ err: toError(error), topic: event.topic }, 'event cannot be sent to other instances');
      return;
    }
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    const { sql, log } = this.deps;
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, 500);
      try {
        await sql`select pg_notify(${EVENTS_CHANNEL}, payload)
                  from unnest(${sql.array(batch)}::text[]) with ordinality as t(payload, n) order by n`;
      } catch (error) {
        // Other instances miss these events; their clients catch up from queries.
        log.error({ err: toError(error), events: batch.length }, 'sending events to other instances failed');
      }
    }
    this.#flushing = null;
  }

  #receive(payload: string): void {
    let message: WireMessage;
    try {
      message = decode(payload);
    } catch (error) {
      this.deps.log.warn({ err: toError(error) }, 'undecodable event notification ignored');
      return;
    }
    if (message.origin === this.deps.origin) return;
    // One at a time, so an event read back from its row is not overtaken by the next.
    this.#inbox = this.#inbox.then(async () => {
      try {
        const event = 'event' in message ? message.event : await this.#readBack(message);
        if (event) this.deps.bus.deliver(event);
      } catch (error) {
        this.deps.log.error({ err: toError(error) }, 'handling an event from another instance failed');
      }
    });
  }

  async #readBack(message: Extract<WireMessage, { ref: unknown }>): Promise<TopicEvent | null> {
    const { sql } = this.deps;
    const at = message.at ? new Date(message.at) : new Date();
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

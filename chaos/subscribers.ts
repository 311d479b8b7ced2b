// Subscribers under faults (SPEC §6): subscriptions to `jobEvents` on every instance, over
// graphql-ws and over SSE, held for the whole scenario. A subscription that ends is opened again
// on the same instance (once it is back up); each one is a segment, which chaos/delivery.ts then
// checks against the runs.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { sseFrames } from '../test/helpers/live.ts';
import type { DbClock, Sql } from './audit.ts';
import { type Cluster, type Instance, sleep } from './cluster.ts';

export type Transport = 'graphql-ws' | 'sse';

export interface ReceivedEvent {
  kind: string;
  /** The event's own time (epoch ms), as the instance that published it stamped it. */
  at: number;
  jobId: string;
  runId: string | null;
  /** The run's status as the event carried it. */
  status: string | null;
  /** The run's instance as the event carried it. */
  instance: string | null;
}

export interface Segment {
  instance: string;
  transport: Transport;
  /** Its place among the segments of its instance and transport (0, 1, …). */
  index: number;
  /** The process of the instance it was opened on. */
  pid: number | null;
  /** Database time (epoch ms). */
  openedAt: number;
  /**
   * Every run with a greater id was inserted after this subscription was receiving (its first
   * event had arrived before the query that read this began), so it must see that run's events.
   * Null: it received nothing, so nothing can be required of it.
   */
  after: number | null;
  events: ReceivedEvent[];
  /** open: still receiving when the window ended; interrupted: EVENTS_INTERRUPTED; error: another GraphQL error; closed: the connection ended; completed: a complete without an error. */
  end: 'open' | 'interrupted' | 'error' | 'closed' | 'completed';
  /** Database time (epoch ms) the segment ended. */
  endedAt: number | null;
  error: { message: string; code: string | null } | null;
}

const QUERY = 'subscription { jobEvents { kind at jobId run { id status instance } } }';
const INTERRUPTED = 'EVENTS_INTERRUPTED';

interface GraphQLErrorJson {
  message?: string;
  extensions?: { code?: string };
}
interface JobEventJson {
  kind: string;
  at: string;
  jobId: string;
  run: { id: string; status: string; instance: string | null } | null;
}

/** Holds a graphql-ws and an SSE subscriber on every instance, resubscribing as segments end. */
export class Subscribers {
  readonly segments: Segment[] = [];
  #cluster: Cluster;
  #sql: Sql;
  #clock: DbClock;
  #stopping = false;
  #loops: Promise<void>[] = [];
  #live = new Set<() => void>();
  #anchors: Promise<void>[] = [];
  windowEnd: number | null = null;

  constructor(cluster: Cluster, sql: Sql, clock: DbClock) {
    this.#cluster = cluster;
    this.#sql = sql;
    this.#clock = clock;
  }

  start(): void {
    for (const instance of this.#cluster.instances) {
      for (const transport of ['graphql-ws', 'sse'] as const) this.#loops.push(this.#slot(instance, transport));
    }
  }

  /** Resolves once every slot has a segment that is receiving (or after `timeoutMs`). */
  async receiving(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const slots = this.#cluster.instances.length * 2;
    while (Date.now() < deadline) {
      const anchored = new Set(
        this.segments.filter((s) => s.after !== null && s.end === 'open' && s.endedAt === null).map((s) => `${s.instance}/${s.transport}`),
      );
      if (anchored.size >= slots) return true;
      await sleep(50);
    }
    return false;
  }

  /** Ends the window the check covers (events that happen later are not required); the subscriptions stay open. */
  markEnd(): number {
    this.windowEnd = this.#clock.now();
    return this.windowEnd;
  }

  /**
   * Waits until every subscription still open has received, from every instance running, a run
   * event stamped after the window's end plus `slackMs` (what each of them sent before has had its
   * turn to arrive, however far its relay lags), or `timeoutMs` passed. Events keep coming as long
   * as the jobs run.
   */
  async drain(slackMs = 500, timeoutMs = 15_000): Promise<void> {
    const until = (this.windowEnd ?? this.markEnd()) + slackMs;
    const deadline = Date.now() + timeoutMs;
    const behind = () => {
      const senders = this.#cluster.running.map((i) => i.id);
      return this.segments.filter((s) => {
        if (s.endedAt !== null || s.events.length === 0) return false;
        const caughtUp = new Set(s.events.filter((e) => e.kind === 'RUN_STARTED' && e.at >= until).map((e) => e.instance));
        return senders.some((id) => !caughtUp.has(id));
      });
    };
    while (behind().length > 0 && Date.now() < deadline) await sleep(100);
  }

  /** Closes every subscription and stops resubscribing. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.windowEnd ??= this.#clock.now();
    for (const close of [...this.#live]) close();
    await Promise.all(this.#loops);
    await Promise.all(this.#anchors);
  }

  async #slot(instance: Instance, transport: Transport): Promise<void> {
    let index = 0;
    while (!this.#stopping) {
      if (instance.state !== 'running') {
        await sleep(100);
        continue;
      }
      const segment: Segment = {
        instance: instance.id,
        transport,
        index,
        pid: instance.pid ?? null,
        openedAt: this.#clock.now(),
        after: null,
        events: [],
        end: 'open',
        endedAt: null,
        error: null,
      };
      this.segments.push(segment);
      await (transport === 'graphql-ws' ? this.#ws(segment, instance.port) : this.#sse(segment, instance.port));
      // A subscription that never got anything (the instance not answering yet) is no segment.
      if (segment.events.length > 0 || segment.error) index++;
      else this.segments.splice(this.segments.indexOf(segment), 1);
      if (!this.#stopping) await sleep(segment.events.length > 0 ? 50 : 200);
    }
  }

  #received(segment: Segment, event: JobEventJson): void {
    segment.events.push({
      kind: event.kind,
      at: Date.parse(event.at),
      jobId: event.jobId,
      runId: event.run?.id ?? null,
      status: event.run?.status ?? null,
      instance: event.run?.instance ?? null,
    });
    if (segment.events.length === 1) this.#anchors.push(this.#anchor(segment));
  }

  /** Reads the greatest run id once the segment received its first event (see Segment.after). */
  async #anchor(segment: Segment): Promise<void> {
    for (;;) {
      try {
        const [row] = await this.#sql<{ max: string }[]>`select coalesce(max(id), 0)::text as max from job_runs`;
        segment.after = Number(row!.max);
        return;
      } catch {
        // The database is away: a later reading only requires less.
        if (this.#stopping) return;
        await sleep(250);
      }
    }
  }

  #finish(segment: Segment, end: Segment['end'], error: Segment['error'] = null): void {
    if (segment.endedAt !== null) return;
    segment.endedAt = this.#clock.now();
    // Closed by the harness at the end: it was still receiving.
    segment.end = this.#stopping ? 'open' : end;
    segment.error = error;
  }

  #ws(segment: Segment, port: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const client = createClient({ url: `ws://127.0.0.1:${port}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
      let done = false;
      const close = () => finish('open');
      const finish = (end: Segment['end'], error: Segment['error'] = null) => {
        if (done) return;
        done = true;
        this.#live.delete(close);
        this.#finish(segment, end, error);
        void Promise.resolve(client.dispose())
          .catch(() => {})
          .finally(resolve);
      };
      this.#live.add(close);
      client.subscribe<{ jobEvents: JobEventJson }>(
        { query: QUERY },
        {
          next: (result) => {
            if (result.errors?.length) {
              const first = result.errors[0] as GraphQLErrorJson;
              const code = first.extensions?.code ?? null;
              finish(code === INTERRUPTED ? 'interrupted' : 'error', { message: String(first.message), code });
            } else if (result.data) this.#received(segment, result.data.jobEvents);
          },
          // An interruption comes as graphql-ws's error message (the GraphQL errors); a lost connection as a close event.
          error: (error: unknown) => {
            if (Array.isArray(error)) {
              const first = (error[0] ?? {}) as GraphQLErrorJson;
              const code = first.extensions?.code ?? null;
              finish(code === INTERRUPTED ? 'interrupted' : 'error', { message: String(first.message), code });
            } else finish('closed', { message: describe(error), code: null });
          },
          complete: () => finish('completed'),
        },
      );
    });
  }

  async #sse(segment: Segment, port: number): Promise<void> {
    const abort = new AbortController();
    const close = () => abort.abort();
    this.#live.add(close);
    let error: Segment['error'] = null;
    try {
      const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
        body: JSON.stringify({ query: QUERY }),
        signal: abort.signal,
      });
      if (!response.ok || !response.body) {
        this.#finish(segment, 'error', { message: `HTTP ${response.status}`, code: null });
        return;
      }
      for await (const frame of sseFrames(response.body)) {
        if (frame.event === 'next') {
          const payload = JSON.parse(frame.data) as { data?: { jobEvents: JobEventJson }; errors?: GraphQLErrorJson[] };
          if (payload.errors?.length) {
            const first = payload.errors[0]!;
            error = { message: String(first.message), code: first.extensions?.code ?? null };
          } else if (payload.data) this.#received(segment, payload.data.jobEvents);
        } else if (frame.event === 'complete') {
          this.#finish(segment, error ? (error.code === INTERRUPTED ? 'interrupted' : 'error') : 'completed', error);
          return;
        }
      }
      this.#finish(
        segment,
        error ? (error.code === INTERRUPTED ? 'interrupted' : 'error') : 'closed',
        error ?? { message: 'the stream ended without complete', code: null },
      );
    } catch (caught) {
      this.#finish(
        segment,
        error ? (error.code === INTERRUPTED ? 'interrupted' : 'error') : 'closed',
        error ?? { message: describe(caught), code: null },
      );
    } finally {
      this.#live.delete(close);
      abort.abort();
    }
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ''}`;
  if (error && typeof error === 'object' && 'code' in error) {
    const e = error as { code: unknown; reason?: unknown };
    return `connection closed (${String(e.code)}${e.reason ? ` ${String(e.reason)}` : ''})`;
  }
  return String(error);
}

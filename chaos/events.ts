// Event delivery under faults (SPEC §6): subscribers to `jobEvents` on every instance, over
// graphql-ws and over SSE, held for the whole scenario. A subscription that ends is opened again
// on the same instance (once it is back up); each one is a segment. Afterwards every segment is
// checked against the runs in the database: each run started while it was receiving must have
// reached it whole — RUN_STARTED and its end event (RUN_SKIPPED for a SKIPPED run), once each, in
// order per job — unless the segment ended with EVENTS_INTERRUPTED (the instance said it could not
// vouch for delivery: the check starts again with the next segment, the gap not counted). A
// segment whose instance was killed ends when its socket closes; the events of its last moments
// are not required. Never a silent gap.
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
      const anchored = new Set(this.segments.filter((s) => s.after !== null && s.end === 'open' && s.endedAt === null).map((s) => `${s.instance}/${s.transport}`));
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
      kind: event.kind, at: Date.parse(event.at), jobId: event.jobId, runId: event.run?.id ?? null, status: event.run?.status ?? null, instance: event.run?.instance ?? null,
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
        void Promise.resolve(client.dispose()).catch(() => {}).finally(resolve);
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
      this.#finish(segment, error ? (error.code === INTERRUPTED ? 'interrupted' : 'error') : 'closed', error ?? { message: 'the stream ended without complete', code: null });
    } catch (caught) {
      this.#finish(segment, error ? (error.code === INTERRUPTED ? 'interrupted' : 'error') : 'closed', error ?? { message: describe(caught), code: null });
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

// ---------------------------------------------------------------------------------------------
// The check.

export interface RunFacts {
  id: string;
  jobId: string;
  status: string;
  /** The instance that claimed (or recorded) it. */
  instance: string | null;
  error: string | null;
  /** Epoch ms. */
  startedAt: number | null;
  finishedAt: number | null;
}

export interface DeliveryReport {
  /** Instance × transport. */
  subscribers: number;
  segments: number;
  events: number;
  /** Segments that ended with EVENTS_INTERRUPTED; each was followed by a new subscription (unless the window ended first). */
  interrupted: number;
  /** Interrupted segments with no later segment on their instance and transport although the window went on for 5 s. */
  notResubscribed: number;
  /** Segments ended because their instance's process was killed (the connection closed). */
  closedByKill: number;
  /** Segments ended otherwise while their instance was up: a close, a complete, or another error. */
  unexpectedEnds: number;
  /** Segments that received nothing before they ended: nothing was required of them. */
  unanchored: number;
  /** Events that had to arrive (per segment, run and kind). */
  required: number;
  /** … that did not, on segments never interrupted, other than those below: silent gaps. */
  missing: number;
  /**
   * … that did not, sent by an instance killed after them, and the last of that instance's events
   * before its kill as the segment saw them (a tail): committed, never sent, died with the process.
   * No subscription anywhere was told (SPEC §6 wants EVENTS_INTERRUPTED then too).
   */
  lostWithKill: number;
  duplicates: number;
  /** Run events of a job that arrived after those of a later run of the job, or a start after its own end. */
  outOfOrder: number;
  /** Run events whose kind or status disagrees with the run's row. */
  mismatched: number;
  examples: {
    missing: { segment: string; runId: string; jobId: string; kind: string; at: string; origin: string | null }[];
    lostWithKill: { segment: string; runId: string; jobId: string; kind: string; at: string; origin: string; killedAfterMs: number }[];
    duplicates: { segment: string; runId: string; kind: string }[];
    outOfOrder: { segment: string; jobId: string; runId: string; kind: string; after: string; status: string | null; error: string | null; instance: string | null }[];
    mismatched: { segment: string; runId: string; kind: string; eventStatus: string | null; status: string | null }[];
    unexpectedEnds: { segment: string; end: string; at: string; error: string | null }[];
  };
}

const RUN_KINDS = new Set(['RUN_STARTED', 'RUN_SKIPPED', 'RUN_SUCCEEDED', 'RUN_FAILED']);
const phase = (kind: string) => (kind === 'RUN_STARTED' ? 'start' : kind === 'RUN_SKIPPED' ? 'skip' : 'end');
const name = (s: Segment) => `${s.instance} ${s.transport} #${s.index}`;
const isoOf = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString());

/**
 * The instance that published a run's event, as far as the row tells: the run's instance for its
 * start, its SKIPPED record and the end it wrote itself; unknown (null) for an end another
 * instance wrote (a lease that expired, a job deleted).
 */
function originOf(run: RunFacts, p: string): string | null {
  if (p !== 'end') return run.instance;
  if ((run.error ?? '').startsWith('lease expired') || (run.status === 'CANCELLED' && run.error === 'job deleted')) return null;
  return run.instance;
}

/**
 * Checks the segments against the runs. `windowEnd` (database time) ends what is required of
 * segments still open then (they were drained past it). A segment whose connection closed is
 * required, of each instance's events, those `closeMarginMs` (default 2 s) older than the newest
 * it received from that instance (of events of unknown origin, than its newest event), and
 * nothing after it closed: what a process had not sent when its connection died ends with it,
 * which the client sees. (The margin: an event's time is its instance's "now" when it happened,
 * not when it was sent: a claim stamped earlier may commit, and be sent, after an end stamped later.) An event missing from an instance killed afterwards, later than every
 * event the segment received from it before the kill, died unsent with that instance: counted as
 * `lostWithKill`, apart from the other silent gaps. `killedPids`: processes the harness killed
 * (their segments' closes are expected).
 */
export function checkDelivery(input: {
  segments: Segment[];
  runs: RunFacts[];
  windowEnd: number;
  killedPids: Set<number>;
  /** The kills (instance, database time), to tell the events that may have died with their instance. */
  kills?: { instance: string; at: number }[];
  closeMarginMs?: number;
  subscribers: number;
}): DeliveryReport {
  const { segments, runs, windowEnd, killedPids } = input;
  const kills = input.kills ?? [];
  const margin = input.closeMarginMs ?? 2_000;
  const byId = new Map(runs.map((r) => [r.id, r]));
  const report: DeliveryReport = {
    subscribers: input.subscribers,
    segments: segments.length,
    events: segments.reduce((n, s) => n + s.events.length, 0),
    interrupted: 0,
    notResubscribed: 0,
    closedByKill: 0,
    unexpectedEnds: 0,
    unanchored: 0,
    required: 0,
    missing: 0,
    lostWithKill: 0,
    duplicates: 0,
    outOfOrder: 0,
    mismatched: 0,
    examples: { missing: [], lostWithKill: [], duplicates: [], outOfOrder: [], mismatched: [], unexpectedEnds: [] },
  };
  const example = <K extends keyof DeliveryReport['examples']>(key: K, value: DeliveryReport['examples'][K][number]) => {
    const list = report.examples[key] as DeliveryReport['examples'][K][number][];
    if (list.length < 10) list.push(value);
  };

  for (const segment of segments) {
    const label = name(segment);
    // How it ended.
    if (segment.end === 'interrupted') {
      report.interrupted++;
      const next = segments.some((s) => s.instance === segment.instance && s.transport === segment.transport && s.index > segment.index);
      if (!next && (segment.endedAt ?? windowEnd) < windowEnd - 5_000) report.notResubscribed++;
    } else if (segment.end === 'closed' && segment.pid !== null && killedPids.has(segment.pid)) {
      report.closedByKill++;
    } else if (segment.end !== 'open') {
      report.unexpectedEnds++;
      example('unexpectedEnds', { segment: label, end: segment.end, at: isoOf(segment.endedAt), error: segment.error ? `${segment.error.code ?? ''} ${segment.error.message}`.trim() : null });
    }

    // What it received: once each, in order per job, agreeing with the rows.
    const seen = new Map<string, Set<string>>();
    const lastOfJob = new Map<string, number>();
    /** The times of the events received, per instance that sent them. */
    const fromOrigin = new Map<string | null, number[]>();
    for (const event of segment.events) {
      if (!RUN_KINDS.has(event.kind) || event.runId === null) continue;
      const kinds = seen.get(event.runId) ?? new Set<string>();
      const p = phase(event.kind);
      const sentBy = byId.has(event.runId) ? originOf(byId.get(event.runId)!, p) : null;
      const times = fromOrigin.get(sentBy);
      if (times) times.push(event.at);
      else fromOrigin.set(sentBy, [event.at]);
      if (kinds.has(p)) {
        report.duplicates++;
        example('duplicates', { segment: label, runId: event.runId, kind: event.kind });
      }
      const id = Number(event.runId);
      if (p !== 'skip') {
        // A SKIPPED run is recorded while the job's run goes on: its event may come between that run's start and end.
        const last = lastOfJob.get(event.jobId) ?? -Infinity;
        if (id < last || (p === 'start' && kinds.has('end'))) {
          report.outOfOrder++;
          const row = byId.get(event.runId);
          example('outOfOrder', {
            segment: label, jobId: event.jobId, runId: event.runId, kind: event.kind, after: String(last),
            status: row?.status ?? null, error: row?.error ?? null, instance: row?.instance ?? null,
          });
        }
        lastOfJob.set(event.jobId, Math.max(last, id));
      }
      kinds.add(p);
      seen.set(event.runId, kinds);
      const row = byId.get(event.runId);
      const expected = row && (p === 'start' ? 'RUNNING' : row.status);
      const kindFits =
        !row ||
        (p === 'skip' ? row.status === 'SKIPPED' : p === 'start' ? row.status !== 'SKIPPED' : event.kind === (row.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED'));
      if (!row || !kindFits || event.status !== expected) {
        report.mismatched++;
        example('mismatched', { segment: label, runId: event.runId, kind: event.kind, eventStatus: event.status, status: row?.status ?? null });
      }
    }

    // What it had to receive.
    if (segment.after === null) {
      report.unanchored++;
      continue;
    }
    if (segment.end === 'interrupted') continue; // the instance said so: the gap is not counted
    const newest = segment.events.reduce((max, e) => Math.max(max, e.at), -Infinity);
    for (const times of fromOrigin.values()) times.sort((a, b) => a - b);
    const newestFrom = (origin: string | null) => fromOrigin.get(origin)?.at(-1) ?? -Infinity;
    /** Whether the segment got an event from `origin` stamped within [from, to]. */
    const gotFrom = (origin: string, from: number, to: number) => {
      const times = fromOrigin.get(origin) ?? [];
      let lo = 0;
      let hi = times.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (times[mid]! < from) lo = mid + 1;
        else hi = mid;
      }
      return lo < times.length && times[lo]! <= to;
    };
    /** Whether the segment owes this event: all until the window's end while open; once closed, what came before the newest it got from the same sender. */
    const owed = (origin: string | null, at: number) => {
      if (segment.end === 'open') return at <= windowEnd;
      const newestSent = origin === null || !fromOrigin.has(origin) ? newest : newestFrom(origin);
      return at <= Math.min(segment.endedAt ?? windowEnd, newestSent) - margin;
    };
    const need = (run: RunFacts, kind: string, at: number | null) => {
      const origin = originOf(run, phase(kind));
      if (at === null || !owed(origin, at)) return;
      report.required++;
      if (seen.get(run.id)?.has(phase(kind))) return;
      // Sent by an instance killed afterwards, and later than all this segment got from it before the kill: died with it.
      const kill = origin === null ? undefined : kills.find((k) => k.instance === origin && k.at >= at && !gotFrom(origin, at, k.at));
      if (kill) {
        report.lostWithKill++;
        example('lostWithKill', { segment: label, runId: run.id, jobId: run.jobId, kind, at: isoOf(at), origin: origin!, killedAfterMs: kill.at - at });
        return;
      }
      report.missing++;
      example('missing', { segment: label, runId: run.id, jobId: run.jobId, kind, at: isoOf(at), origin });
    };
    for (const run of runs) {
      if (Number(run.id) <= segment.after) continue;
      if (run.status === 'SKIPPED') need(run, 'RUN_SKIPPED', run.finishedAt);
      else {
        need(run, 'RUN_STARTED', run.startedAt);
        if (run.status !== 'RUNNING') need(run, run.status === 'SUCCEEDED' ? 'RUN_SUCCEEDED' : 'RUN_FAILED', run.finishedAt);
      }
    }
  }
  return report;
}

/** The runs of the audited jobs, for `checkDelivery`. */
export async function runFacts(sql: Sql, jobPrefix: string): Promise<RunFacts[]> {
  const like = `${jobPrefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  const rows = await sql<{ id: string; jobId: string; status: string; instance: string | null; error: string | null; startedAt: Date | null; finishedAt: Date | null }[]>`
    select id::text, job_id, status, instance, error, started_at, finished_at from job_runs where job_id like ${like} order by job_runs.id`;
  return rows.map((r) => ({
    id: r.id, jobId: r.jobId, status: r.status, instance: r.instance, error: r.error,
    startedAt: r.startedAt?.getTime() ?? null, finishedAt: r.finishedAt?.getTime() ?? null,
  }));
}

// Event delivery across instances (SPEC §6, §9): two instances on one database, jobs at 0:0:1
// calling the no-op operation (both instances claim them), and 1,000 graphql-ws subscribers to
// `jobEvents` on instance B, each on its own connection. B's subscribers get B's own events
// locally and A's through LISTEN/NOTIFY. Measured over a window: delivery latency (receipt here
// minus the event's `at`), events lost against the runs the database recorded, duplicates, events
// out of order per job, EVENTS_INTERRUPTED, and the CPU and RSS of instance B (beside B's CPU
// with the same jobs and no subscribers).
//
// The subscribers run on worker threads of this process (SUBSCRIBER_THREADS), so that reading
// 1,000 sockets is not what holds the events up: a subscriber that falls behind measures itself.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { createClient, type Client } from 'graphql-ws';
import postgres from 'postgres';
import WebSocket from 'ws';
import {
  type BenchContext,
  cpuSeconds,
  dropDatabase,
  freshDatabase,
  type ResultRow,
  round,
  rssMb,
  type RunningService,
  type SectionResult,
  sleep,
  startService,
  summary,
  type Summary,
  createJobs,
} from '../lib.ts';

export interface EventsOptions {
  /** Subscribers on instance B (1,000). */
  subscribers?: number;
  /** Jobs at 0:0:1, their due times spread evenly over the second (10: 20 events/s, 20,000 messages/s to deliver). */
  jobs?: number;
  /** The measured window in seconds (30; 8 when quick). */
  windowSeconds?: number;
  /** Seconds of B's CPU measured with the same jobs and no subscriber, after the window (10; 0 when quick). */
  baselineSeconds?: number;
  /** Extra settings for instance B. */
  envB?: Record<string, string>;
  /** Node options for instance B (e.g. `--cpu-prof`, `--cpu-prof-dir=/tmp/prof-events`). */
  nodeArgsB?: string[];
  /** Told when the measured window begins and ends (to profile instance B over it, say). */
  onWindow?: (phase: 'start' | 'end', b: RunningService) => void;
}

/** Threads the subscribers are spread over. */
const SUBSCRIBER_THREADS = 2;

/** What a subscriber is sent: the payload a dashboard would select. */
const SUBSCRIPTION = 'subscription Watch { jobEvents { kind at jobId run { id status scheduledAt } } }';

interface Received {
  kind: string;
  at: string;
  jobId: string;
  run: { id: string; status: string; scheduledAt: string } | null;
}

/** What a thread's subscribers received, added up. */
interface Report {
  /** Per event (`<run id>:start|end|skip`), how many subscribers received it. */
  counts: [string, number][];
  /** Latencies of events whose `at` lies in the window, in ms. */
  latencies: Float64Array;
  /** The same for RUN_STARTED only: an end's `at` is when its outcome was known, before the run's row was written. */
  starts: Float64Array;
  /** Every message received, whenever. */
  received: number;
  outOfOrder: number;
  firstOutOfOrder: string | undefined;
  errors: [string, number][];
  /** Subscriptions that ended in any other way while measured (an error without a code, a complete). */
  endedOtherwise: number;
  /** Connections refused while the instance was busy and opened again. */
  reconnects: number;
}

type ToThread = { type: 'window'; from: number; to: number } | { type: 'report'; full: boolean } | { type: 'close' };
type FromThread = { type: 'ready' } | { type: 'failed'; message: string } | { type: 'report'; report: Report } | { type: 'closed' };

const phaseOf = (kind: string): 'start' | 'end' | 'skip' | null =>
  kind === 'RUN_STARTED' ? 'start' : kind === 'RUN_SUCCEEDED' || kind === 'RUN_FAILED' ? 'end' : kind === 'RUN_SKIPPED' ? 'skip' : null;

/** A growing array of doubles. */
class Samples {
  values = new Float64Array(1 << 16);
  n = 0;
  push(value: number): void {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2);
      bigger.set(this.values);
      this.values = bigger;
    }
    this.values[this.n++] = value;
  }
  get taken(): Float64Array {
    return this.values.slice(0, this.n);
  }
}

/** One thread's subscribers: opens them, tallies what they receive, reports when asked. */
async function subscriberThread(port: number, count: number): Promise<void> {
  const counts = new Map<string, number>();
  const latencies = new Samples();
  const starts = new Samples();
  const errors = new Map<string, number>();
  let window: { from: number; to: number } | null = null;
  let received = 0;
  let outOfOrder = 0;
  let firstOutOfOrder: string | undefined;
  let endedOtherwise = 0;
  let reconnects = 0;
  let closing = false;
  const clients: Client[] = [];
  const error = (code: string) => errors.set(code, (errors.get(code) ?? 0) + 1);

  const watch = (client: Client) => {
    // Per job, the rank of the last run event seen: a run's start before its end, runs in id order.
    const last = new Map<string, number>();
    client.subscribe<{ jobEvents: Received }>(
      { query: SUBSCRIPTION },
      {
        next: (result) => {
          const receivedAt = Date.now();
          received++;
          for (const e of result.errors ?? []) error(String(e.extensions?.['code'] ?? 'no code'));
          const event = result.data?.jobEvents;
          const phase = event?.run ? phaseOf(event.kind) : null;
          if (!event?.run || !phase) return;
          const key = `${event.run.id}:${phase}`;
          counts.set(key, (counts.get(key) ?? 0) + 1);
          // A skipped due time is told when it is skipped, while the run before it still goes: not ranked.
          if (phase !== 'skip') {
            const rank = Number(event.run.id) * 2 + (phase === 'start' ? 0 : 1);
            const before = last.get(event.jobId);
            if (before !== undefined && rank < before) {
              outOfOrder++;
              firstOutOfOrder ??= `job ${event.jobId}: ${event.kind} of run ${event.run.id} after rank ${before}`;
            }
            last.set(event.jobId, rank);
          }
          const at = Date.parse(event.at);
          if (window && at >= window.from && at < window.to) {
            latencies.push(receivedAt - at);
            if (phase === 'start') starts.push(receivedAt - at);
          }
        },
        error: (failure) => {
          if (closing) return;
          const list = Array.isArray(failure) ? (failure as { extensions?: Record<string, unknown> }[]) : [];
          if (list.length === 0) endedOtherwise++;
          for (const e of list) error(String(e.extensions?.['code'] ?? 'no code'));
        },
        complete: () => {
          if (!closing) endedOtherwise++;
        },
      },
    );
  };

  // Each on its own connection, 25 connecting at a time. One refused while the instance is busy
  // (graphql-ws closes a connection whose init it did not read within 3 s) is opened again.
  const open = async (): Promise<Client> => {
    for (let attempt = 1; ; attempt++) {
      const client = createClient({
        url: `ws://127.0.0.1:${port}/graphql`,
        webSocketImpl: WebSocket,
        retryAttempts: 0,
        lazy: false,
        onNonLazyError: () => {},
      });
      const connected = await new Promise<boolean>((resolve) => {
        client.on('connected', () => resolve(true));
        client.on('closed', () => resolve(false));
      });
      if (connected) {
        watch(client);
        return client;
      }
      await client.dispose();
      reconnects++;
      if (attempt === 10) throw new Error('a subscriber could not connect to instance B in 10 attempts');
    }
  };
  const port_ = parentPort!;
  const send = (message: FromThread, transfer: ArrayBuffer[] = []) => port_.postMessage(message, transfer);
  try {
    for (let from = 0; from < count; from += 25)
      clients.push(...(await Promise.all(Array.from({ length: Math.min(25, count - from) }, open))));
  } catch (failure) {
    send({ type: 'failed', message: String(failure instanceof Error ? failure.message : failure) });
    return;
  }
  send({ type: 'ready' });
  port_.on('message', (message: ToThread) => {
    if (message.type === 'window') window = { from: message.from, to: message.to };
    else if (message.type === 'report') {
      const report: Report = {
        counts: [...counts],
        latencies: message.full ? latencies.taken : new Float64Array(0),
        starts: message.full ? starts.taken : new Float64Array(0),
        received,
        outOfOrder,
        firstOutOfOrder,
        errors: [...errors],
        endedOtherwise,
        reconnects,
      };
      send({ type: 'report', report }, [report.latencies.buffer as ArrayBuffer, report.starts.buffer as ArrayBuffer]);
    } else {
      closing = true;
      void Promise.all(clients.map((client) => client.dispose())).then(() => {
        send({ type: 'closed' });
        port_.close();
      });
    }
  });
}

if (!isMainThread && (workerData as { eventsSubscribers?: boolean } | null)?.eventsSubscribers) {
  const { port, count } = workerData as { port: number; count: number };
  void subscriberThread(port, count);
}

/** The main thread's handle on one subscriber thread. */
class Subscribers {
  readonly #worker: Worker;
  #waiting: ((message: FromThread) => void)[] = [];

  constructor(port: number, count: number) {
    // This file, through tsx's API: on Node 20 a thread's own tsx hooks do not take a .ts entry.
    const load = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => tsx.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`;
    this.#worker = new Worker(load, { eval: true, workerData: { eventsSubscribers: true, port, count } });
    this.#worker.on('message', (message: FromThread) => this.#waiting.shift()?.(message));
    this.#worker.on('error', (failure) => {
      for (const wake of this.#waiting.splice(0)) wake({ type: 'failed', message: String(failure) });
    });
  }

  #ask(message: ToThread | null): Promise<FromThread> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      if (message) this.#worker.postMessage(message);
    });
  }

  async ready(): Promise<void> {
    const answer = await this.#ask(null);
    if (answer.type === 'failed') throw new Error(answer.message);
  }

  window(from: number, to: number): void {
    this.#worker.postMessage({ type: 'window', from, to } satisfies ToThread);
  }

  async report(full: boolean): Promise<Report> {
    const answer = await this.#ask({ type: 'report', full });
    if (answer.type !== 'report') throw new Error(`a subscriber thread answered ${answer.type}`);
    return answer.report;
  }

  async close(): Promise<void> {
    await Promise.race([this.#ask({ type: 'close' }), sleep(10_000)]);
    await this.#worker.terminate();
  }
}

/** The subscriptions open on an instance, from its /metrics (0 when it does not answer in time). */
async function openSubscriptions(port: number): Promise<number> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
    return Number(/^server_jobs_subscribers(?:\{[^}]*\})? (\d+)/m.exec(await response.text())?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** The threads' reports as one. */
function merge(reports: Report[]): Omit<Report, 'counts' | 'errors'> & { counts: Map<string, number>; errors: Map<string, number> } {
  const counts = new Map<string, number>();
  const errors = new Map<string, number>();
  for (const report of reports) {
    for (const [key, n] of report.counts) counts.set(key, (counts.get(key) ?? 0) + n);
    for (const [code, n] of report.errors) errors.set(code, (errors.get(code) ?? 0) + n);
  }
  const concat = (arrays: Float64Array[]) => {
    const all = new Float64Array(arrays.reduce((sum, a) => sum + a.length, 0));
    let offset = 0;
    for (const array of arrays) {
      all.set(array, offset);
      offset += array.length;
    }
    return all;
  };
  const sum = (pick: (r: Report) => number) => reports.reduce((total, r) => total + pick(r), 0);
  return {
    counts,
    errors,
    latencies: concat(reports.map((r) => r.latencies)),
    starts: concat(reports.map((r) => r.starts)),
    received: sum((r) => r.received),
    outOfOrder: sum((r) => r.outOfOrder),
    firstOutOfOrder: reports.find((r) => r.firstOutOfOrder)?.firstOutOfOrder,
    endedOtherwise: sum((r) => r.endedOtherwise),
    reconnects: sum((r) => r.reconnects),
  };
}

export default async function events(context: BenchContext, options: EventsOptions = {}): Promise<SectionResult> {
  const subscribers = options.subscribers ?? 1000;
  const jobs = options.jobs ?? 10;
  const windowSeconds = options.windowSeconds ?? (context.quick ? 8 : 30);
  const baselineSeconds = options.baselineSeconds ?? (context.quick ? 0 : 10);
  const url = await freshDatabase(context, 'events');
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const threads: Subscribers[] = [];
  let a: RunningService | undefined;
  let b: RunningService | undefined;
  try {
    // One after the other: the first one migrates the fresh database.
    a = await startService(context, url, { INSTANCE_ID: 'bench-events-a' });
    b = await startService(context, url, { INSTANCE_ID: 'bench-events-b', ...options.envB }, options.nodeArgsB);

    // The subscribers first, while nothing runs yet.
    const connectStarted = performance.now();
    for (let i = 0; i < SUBSCRIBER_THREADS; i++) {
      const count = Math.floor(subscribers / SUBSCRIBER_THREADS) + (i < subscribers % SUBSCRIBER_THREADS ? 1 : 0);
      threads.push(new Subscribers(b.port, count));
    }
    await Promise.all(threads.map((thread) => thread.ready()));
    // Connected is not yet subscribed: wait until B counts them all.
    for (let tries = 0; (await openSubscriptions(b.port)) < subscribers; tries++) {
      if (tries > 300) throw new Error(`instance B did not report ${subscribers} open subscriptions`);
      await sleep(100);
    }
    const connectSeconds = (performance.now() - connectStarted) / 1000;

    // Then the jobs, and a few seconds for the load to settle.
    const firstDueMs = Math.ceil((Date.now() + 2000) / 1000) * 1000;
    // Their due times spread evenly over each second.
    await createJobs(a, jobs, {
      prefix: 'события',
      input: (n) => ({ startAt: new Date(firstDueMs + Math.floor((n * 1000) / jobs)).toISOString() }),
    });
    await sleep(Math.max(0, firstDueMs - Date.now()) + 3000);

    const from = Math.ceil((Date.now() + 1000) / 1000) * 1000;
    const to = from + windowSeconds * 1000;
    for (const thread of threads) thread.window(from, to);
    await sleep(from - Date.now());
    options.onWindow?.('start', b);
    const cpuBefore = await cpuSeconds(b.process.pid);
    const cpuA = await cpuSeconds(a.process.pid);
    const clientCpu = process.cpuUsage();
    const receivedBefore = merge(await Promise.all(threads.map((t) => t.report(false)))).received;
    let rssMax = 0;
    while (Date.now() < to) {
      rssMax = Math.max(rssMax, await rssMb(b.process.pid));
      await sleep(Math.min(1000, Math.max(0, to - Date.now())));
    }
    const cpuB = (await cpuSeconds(b.process.pid)) - cpuBefore;
    const cpuOfA = (await cpuSeconds(a.process.pid)) - cpuA;
    const clientUsage = process.cpuUsage(clientCpu);
    options.onWindow?.('end', b);

    // Every run event of the window, as the database recorded it: what each subscriber is owed.
    await sleep(1000);
    const runs = await sql<{ id: string; status: string; started: boolean; finished: boolean; instance: string | null }[]>`
      select id::text, status, instance,
             started_at >= ${new Date(from)} and started_at < ${new Date(to)} as started,
             finished_at >= ${new Date(from)} and finished_at < ${new Date(to)} as finished
      from job_runs
      where (started_at >= ${new Date(from)} and started_at < ${new Date(to)})
         or (finished_at >= ${new Date(from)} and finished_at < ${new Date(to)})`;
    const owed: string[] = [];
    for (const run of runs) {
      if (run.status === 'SKIPPED') {
        if (run.finished) owed.push(`${run.id}:skip`);
        continue;
      }
      if (run.started) owed.push(`${run.id}:start`);
      if (run.finished && run.status !== 'RUNNING') owed.push(`${run.id}:end`);
    }
    const missing = (counts: Map<string, number>) => owed.reduce((sum, key) => sum + Math.max(0, subscribers - (counts.get(key) ?? 0)), 0);

    // Events of the window still on their way (an instance behind): until every subscriber has them
    // all, or 5 s go by with none of them arriving (at most 2 minutes), so a late event is told from a lost one.
    const drainStarted = Date.now();
    for (let last = -1, since = Date.now(); Date.now() - drainStarted < 120_000;) {
      const now = missing(merge(await Promise.all(threads.map((t) => t.report(false)))).counts);
      if (now === 0) break;
      if (now !== last) [last, since] = [now, Date.now()];
      else if (Date.now() - since >= 5000) break;
      await sleep(250);
    }
    const drainSeconds = (Date.now() - drainStarted) / 1000;
    const cpuDrained = await cpuSeconds(b.process.pid);
    const drainedAt = Date.now();
    const tally = merge(await Promise.all(threads.map((t) => t.report(true))));

    // B with the same jobs and no subscriber: its CPU without delivery.
    let baselineShare: number | null = null;
    if (baselineSeconds > 0) {
      await Promise.all(threads.splice(0).map((thread) => thread.close()));
      await sleep(1000);
      const before = await cpuSeconds(b.process.pid);
      await sleep(baselineSeconds * 1000);
      baselineShare = ((await cpuSeconds(b.process.pid)) - before) / baselineSeconds;
    }

    let lost = 0;
    let duplicates = 0;
    for (const key of owed) {
      const count = tally.counts.get(key) ?? 0;
      lost += Math.max(0, subscribers - count);
      duplicates += Math.max(0, count - subscribers);
    }
    const startedRuns = runs.filter((r) => r.started);
    const byB = startedRuns.filter((r) => r.instance === 'bench-events-b').length;
    const latency = summary(Array.from(tally.latencies));
    const startLatency = summary(Array.from(tally.starts));
    const spanSeconds = (drainedAt - from) / 1000;
    const cpuPerMessage =
      baselineShare === null
        ? null
        : ((cpuDrained - cpuBefore - baselineShare * spanSeconds) * 1e6) / Math.max(1, tally.received - receivedBefore);
    const interrupted = tally.errors.get('EVENTS_INTERRUPTED') ?? 0;
    const rounded = (s: Summary) => `${round(s.p50)} / ${round(s.p99)} / ${round(s.max)}`;
    const rows: ResultRow[] = [
      {
        metric: 'events: delivery latency p50 / p99 / max',
        value: rounded(latency),
        unit: 'ms',
        note: `receipt by the subscriber minus the event's at (set by the instance that published it; one machine, one clock), ${subscribers} graphql-ws subscribers on instance B`,
      },
      {
        metric: 'events: of which RUN_STARTED p50 / p99 / max',
        value: rounded(startLatency),
        unit: 'ms',
        note: 'a start is published as it happens; an end’s at is when the outcome was known, before its row was written',
      },
      { metric: 'events: target p99', value: 50, unit: 'ms', note: latency.p99 <= 50 ? 'met' : `missed by ${round(latency.p99 - 50)} ms` },
      {
        metric: 'events: owed per subscriber',
        value: owed.length,
        note: `run starts, ends and skips the database recorded in the ${windowSeconds} s window (${jobs} jobs at 0:0:1; ${byB} of ${startedRuns.length} runs started on B)`,
      },
      { metric: 'events: delivered', value: latency.n, note: `${round(latency.n / windowSeconds, 0)} messages/s over all subscribers` },
      {
        metric: 'events: lost',
        value: lost,
        note: `owed minus received, summed over subscribers (waited ${round(drainSeconds, 0)} s past the window for late ones)`,
      },
      { metric: 'events: duplicates / out of order', value: `${duplicates} / ${tally.outOfOrder}`, note: tally.firstOutOfOrder },
      {
        metric: 'events: EVENTS_INTERRUPTED',
        value: interrupted,
        note: [...tally.errors].map(([code, n]) => `${code} ${n}`).join(', ') || undefined,
      },
      { metric: 'events: subscriptions ended otherwise', value: tally.endedOtherwise },
      {
        metric: 'events: CPU of instance B',
        value: round((cpuB / windowSeconds) * 100, 0),
        unit: '% of a core',
        note: baselineShare === null ? undefined : `${round(baselineShare * 100, 0)}% with the same jobs and no subscriber`,
      },
      {
        metric: 'events: CPU of instance B per message',
        value: cpuPerMessage === null ? 'n/a' : round(cpuPerMessage, 1),
        unit: cpuPerMessage === null ? undefined : 'µs',
        note: 'from the window’s start until the last owed event arrived: B’s CPU above its no-subscriber figure, per message received',
      },
      { metric: 'events: CPU of instance A', value: round((cpuOfA / windowSeconds) * 100, 0), unit: '% of a core' },
      { metric: 'events: RSS of instance B', value: rssMax, unit: 'MB', note: 'max over the window' },
      {
        metric: 'events: CPU of the subscribers (this process)',
        value: round(((clientUsage.user + clientUsage.system) / 1e6 / windowSeconds) * 100, 0),
        unit: '% of a core',
        note: `${SUBSCRIBER_THREADS} threads, ${round(connectSeconds)} s to open them all${tally.reconnects ? `, ${tally.reconnects} connections refused and opened again` : ''}`,
      },
    ];
    return {
      name: 'events',
      rows,
      data: {
        subscribers,
        jobs,
        windowSeconds,
        latencyMs: latency,
        startLatencyMs: startLatency,
        owed: owed.length,
        delivered: latency.n,
        lost,
        duplicates,
        outOfOrder: tally.outOfOrder,
        errors: Object.fromEntries(tally.errors),
        endedOtherwise: tally.endedOtherwise,
        reconnects: tally.reconnects,
        drainSeconds: round(drainSeconds),
        cpuShareB: round(cpuB / windowSeconds, 3),
        cpuShareBWithoutSubscribers: baselineShare === null ? null : round(baselineShare, 3),
        cpuPerMessageUsB: cpuPerMessage === null ? null : round(cpuPerMessage, 1),
        cpuShareA: round(cpuOfA / windowSeconds, 3),
        rssMaxMbB: rssMax,
        clientCpuShare: round((clientUsage.user + clientUsage.system) / 1e6 / windowSeconds, 3),
      },
    };
  } finally {
    await Promise.all(threads.map((thread) => thread.close()));
    await sql.end();
    await b?.stop(15_000).catch(() => {});
    await a?.stop(15_000).catch(() => {});
    await dropDatabase(context, url).catch(() => {});
  }
}

// Scheduling at one second: N jobs at period 0:0:1 calling the no-op server operation (isolated on
// worker threads, as by default), every run persisted and published. Measures, over a window
// after the jobs exist: the share of due times that got a run of their own, lateness (start minus
// due time, from the rows), CPU and RSS of the process, /health while loaded, and how long SIGTERM
// takes to end it.
import postgres from 'postgres';
import {
  type BenchContext,
  cpuSeconds,
  freshDatabase,
  dropDatabase,
  rssMb,
  round,
  type RunningService,
  sleep,
  startService,
  summary,
  type Summary,
  createJobs,
  roundedSummary,
} from '../lib.ts';

export interface LoadResult {
  jobs: number;
  windowSeconds: number;
  /** Jobs created per second through the API (25 per request, 4 requests in flight). */
  createdPerSecond: number;
  dueTimes: number;
  ownRuns: number;
  /** Share of due times with a run of their own (not coalesced, not skipped). */
  ownShare: number;
  coalesced: number;
  skipped: number;
  notSucceeded: number;
  runsPerSecond: number;
  latenessMs: Summary;
  /** CPU of the service process per run, in µs. */
  cpuPerRunUs: number;
  cpuShare: number;
  rssIdleMb: number;
  rssMaxMb: number;
  healthMs: Summary;
  healthFailures: number;
  sigtermMs: number;
  sigtermExit: string;
  /** Per second of the window: runs started that second and their p99 lateness. */
  perSecond?: { second: number; runs: number; p99: number }[];
}

/** What one window of a load measured. */
export type WindowResult = Omit<LoadResult, 'createdPerSecond' | 'rssIdleMb' | 'sigtermMs' | 'sigtermExit'>;

/** A service on a fresh database, to which jobs are added and whose windows are measured. */
export interface Load {
  service: RunningService;
  /** Its database. */
  url: string;
  rssIdleMb: number;
  jobs: number;
  /** Adds jobs until there are `total`; resolves with the creation rate. */
  grow(total: number): Promise<number>;
  measure(windowSeconds: number, options?: { perSecond?: boolean }): Promise<WindowResult>;
  /** SIGTERM, and how long the process took to exit. */
  terminate(): Promise<{ ms: number; exit: string }>;
  close(): Promise<void>;
}

export async function openLoad(
  context: BenchContext,
  label: string,
  options: { env?: Record<string, string>; nodeArgs?: string[]; input?: (n: number) => Record<string, unknown> } = {},
): Promise<Load> {
  const url = await freshDatabase(context, label);
  const service = await startService(context, url, options.env, options.nodeArgs);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  await sleep(2000);
  const load: Load = {
    service,
    url,
    rssIdleMb: await rssMb(service.process.pid),
    jobs: 0,
    async grow(total) {
      const rate =
        total > load.jobs ? (await createJobs(service, total - load.jobs, { from: load.jobs, input: options.input })).perSecond : 0;
      load.jobs = Math.max(total, load.jobs);
      return rate;
    },
    measure: (windowSeconds, measureOptions = {}) =>
      measureWindow(service, sql, load.jobs, windowSeconds, measureOptions.perSecond ?? false),
    async terminate() {
      const at = performance.now();
      service.process.child.kill('SIGTERM');
      const exit = await service.process.waitForExit(60_000).catch(() => null);
      const ms = round(performance.now() - at, 0);
      if (!exit) service.process.child.kill('SIGKILL');
      return { ms, exit: exit ? `code ${exit.code ?? exit.signal}` : 'did not exit within 60 s (killed)' };
    },
    async close() {
      await sql.end();
      await service.stop(1000).catch(() => {});
      await dropDatabase(context, url).catch(() => {});
    },
  };
  return load;
}

async function measureWindow(
  service: RunningService,
  sql: postgres.Sql,
  jobs: number,
  windowSeconds: number,
  perSecond: boolean,
): Promise<WindowResult> {
  const [window] = await sql<{ from: Date }[]>`select date_trunc('second', clock_timestamp()) + interval '1 second' as from`;
  const fromMs = window!.from.getTime();
  const toMs = fromMs + windowSeconds * 1000;
  await sleep(Math.max(0, fromMs - Date.now()));
  const cpuBefore = await cpuSeconds(service.process.pid);
  let rssMaxMb = 0;
  const health: number[] = [];
  let healthFailures = 0;
  while (Date.now() < toMs) {
    const asked = performance.now();
    try {
      const response = await fetch(`http://127.0.0.1:${service.port}/health`, { signal: AbortSignal.timeout(5000) });
      await response.text();
      if (!response.ok) healthFailures++;
    } catch {
      healthFailures++;
    }
    health.push(performance.now() - asked);
    rssMaxMb = Math.max(rssMaxMb, await rssMb(service.process.pid));
    await sleep(Math.min(1000, Math.max(0, toMs - Date.now())));
  }
  const cpu = (await cpuSeconds(service.process.pid)) - cpuBefore;
  // Runs due in the window have started by a second after it (or were coalesced into later ones).
  await sleep(1500);
  const runs = await sql<{ lateness: number | null; status: string; missed: number; second: number }[]>`
    select extract(epoch from started_at - scheduled_at) * 1000 as lateness, status, missed,
           floor(extract(epoch from scheduled_at) - ${fromMs / 1000})::int as second
    from job_runs
    where trigger = 'SCHEDULE' and scheduled_at >= ${new Date(fromMs)} and scheduled_at < ${new Date(toMs)}`;
  const started = runs.filter((r) => r.lateness !== null);
  const dueTimes = jobs * windowSeconds;
  const ownRuns = started.length;
  return {
    jobs,
    windowSeconds,
    dueTimes,
    ownRuns,
    ownShare: round(ownRuns / dueTimes, 4),
    coalesced: runs.reduce((sum, r) => sum + r.missed, 0),
    skipped: runs.filter((r) => r.status === 'SKIPPED').length,
    notSucceeded: runs.filter((r) => r.status !== 'SUCCEEDED' && r.status !== 'SKIPPED').length,
    runsPerSecond: round(ownRuns / windowSeconds, 0),
    latenessMs: roundedSummary(started.map((r) => r.lateness!)),
    cpuPerRunUs: round((cpu * 1e6) / Math.max(1, ownRuns), 0),
    cpuShare: round(cpu / windowSeconds, 2),
    rssMaxMb,
    healthMs: roundedSummary(health),
    healthFailures,
    perSecond: perSecond
      ? Array.from({ length: windowSeconds }, (_, second) => {
          const these = started.filter((r) => r.second === second).map((r) => r.lateness!);
          return { second, runs: these.length, p99: round(summary(these).p99) };
        })
      : undefined,
  };
}

/** Starts a service, gives it `jobs` jobs, measures one window after a warm-up, then times SIGTERM. */
export async function measureLoad(
  context: BenchContext,
  jobs: number,
  options: {
    windowSeconds: number;
    warmupSeconds?: number;
    env?: Record<string, string>;
    nodeArgs?: string[];
    label?: string;
    /** The jobs' input beyond the default (a no-op at 0:0:1). */
    input?: (n: number) => Record<string, unknown>;
  },
): Promise<LoadResult> {
  const load = await openLoad(context, options.label ?? `load_${jobs}`, options);
  try {
    const createdPerSecond = await load.grow(jobs);
    await sleep((options.warmupSeconds ?? 5) * 1000);
    const window = await load.measure(options.windowSeconds);
    const sigterm = await load.terminate();
    return {
      ...window,
      createdPerSecond: round(createdPerSecond, 0),
      rssIdleMb: load.rssIdleMb,
      sigtermMs: sigterm.ms,
      sigtermExit: sigterm.exit,
    };
  } finally {
    await load.close();
  }
}

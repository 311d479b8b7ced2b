// The API under load (issue 11): how fast jobs can be created through it while the first of them
// already run, and how many `jobs` (1,000 jobs, each with its lastRun) and `logEntries(first: 50)`
// pages it answers a second beside the trivial `{ __typename }`, with those jobs running every
// second. The target: both pages at ≥ ½ of the trivial query's throughput.
import postgres from 'postgres';
import {
  type BenchContext,
  cpuSeconds,
  dropDatabase,
  freshDatabase,
  median,
  round,
  type RunningService,
  type SectionResult,
  sleep,
  startService,
  type Summary,
  createJobs,
  CREATE_IN_FLIGHT,
  CREATE_PER_REQUEST,
  roundedSummary,
} from '../lib.ts';

/** Every this many jobs, one calls an operation that does not exist, so its runs fail with ERROR entries. */
const FAILING_EVERY = 100;
const CLIENTS = 16;

/** What is measured, the trivial query first: the pages are compared with it. */
export const QUERIES = {
  trivial: '{ __typename }',
  jobs: '{ jobs { id name period nextRunAt lastRun { status } } }',
  logEntries: '{ logEntries(first: 50) { edges { node { id at level message } } } }',
} as const;
type Label = keyof typeof QUERIES;

export default async function queries(context: BenchContext): Promise<SectionResult> {
  const rows: SectionResult['rows'] = [];
  const data: Record<string, unknown> = {};

  const counts = context.quick ? [1_000] : [10_000, 1_000];
  let measured: Awaited<ReturnType<typeof measureQueries>> | undefined;
  for (const count of counts) {
    const url = await freshDatabase(context, `queries_${count}`);
    // info: the process helper waits for the `listening` record, logged at info.
    const service = await startService(context, url, { LOG_LEVEL: 'info' });
    try {
      const created = await createJobs(service, count, {
        prefix: 'bench',
        // Every FAILING_EVERY-th job calls an operation that does not exist: its runs fail with ERROR entries.
        input: (n) => (n % FAILING_EVERY === 0 ? { externalCall: 'ServerOperationConnector:NoSuchOperation' } : {}),
      });
      const rate = round(count / created.seconds, 0);
      rows.push({
        metric: `create ${count.toLocaleString('en')} jobs (0:0:1)`,
        value: rate,
        unit: 'jobs/s',
        note: `${round(created.seconds, 1)} s, ${CREATE_PER_REQUEST} per request, ${CREATE_IN_FLIGHT} requests in flight`,
      });
      data[`create${count}`] = { seconds: round(created.seconds, 2), jobsPerSecond: rate, requestMs: created.requestMs };
      if (count !== 1_000) continue;
      // Runs and their log entries (ERROR ones from the failing jobs) pile up meanwhile.
      await sleep(context.quick ? 5_000 : 20_000);
      measured = await measureQueries(service, url, context.quick);
    } finally {
      await service.stop();
      await dropDatabase(context, url);
    }
  }

  const { throughput } = measured!;
  const trivial = throughput.trivial.median;
  for (const [label, t] of Object.entries(throughput)) {
    const cpu = `service CPU ${t.serviceCpuPercent}% (${measured!.runsCpuPercent}% for the runs alone)`;
    rows.push({
      metric: `${label} query (${CLIENTS} clients)`,
      value: round(t.median, 0),
      unit: 'req/s',
      note:
        label === 'trivial' ? `${QUERIES.trivial}; ${cpu}` : `${round(t.median / trivial, 2)}× the trivial query (target ≥ 0.5); ${cpu}`,
    });
  }
  data['throughput'] = throughput;
  data['runsCpuPercent'] = measured!.runsCpuPercent;
  data['rows'] = { jobs: measured!.jobs, runs: measured!.runs, logEntries: measured!.logEntries };
  return { name: 'queries', rows, data };
}

interface Throughput {
  /** Requests a second of each round. */
  rounds: number[];
  median: number;
  latencyMs: Summary;
  /** The service's CPU use meanwhile, % of one core (its runs' share included): near 100, it is what bounds the rate. */
  serviceCpuPercent: number;
}

async function measureQueries(
  service: RunningService,
  url: string,
  quick: boolean,
): Promise<{ throughput: Record<Label, Throughput>; runsCpuPercent: number; jobs: number; runs: number; logEntries: number }> {
  const { jobs } = await service.gql<{ jobs: { lastRun: { status: string } | null }[] }>(QUERIES.jobs);
  if (!jobs.some((job) => job.lastRun)) throw new Error('no job has run yet');
  const errors = await service.gql<{ logEntries: { edges: unknown[] } }>(
    '{ logEntries(level: ERROR, first: 1) { edges { node { id } } } }',
  );
  if (errors.logEntries.edges.length === 0) throw new Error('no ERROR log entry yet');
  const counts = await tableCounts(url);
  const pid = service.process.pid;
  // What the runs alone use of the service's CPU.
  const quiet = { cpu: await cpuSeconds(pid), at: performance.now() };
  await sleep(quick ? 1_000 : 5_000);
  const runsCpuPercent = round((100 * ((await cpuSeconds(pid)) - quiet.cpu)) / ((performance.now() - quiet.at) / 1000), 0);
  const throughput = {} as Record<Label, Throughput>;
  const roundMs = quick ? 2_000 : 10_000;
  const rounds = quick ? 1 : 3;
  for (const [label, query] of Object.entries(QUERIES) as [Label, string][]) {
    await hammer(service.port, query, Math.min(roundMs, 2_000)); // warm-up: connections, JIT, plans
    const results: number[] = [];
    const latencies: number[] = [];
    const before = { cpu: await cpuSeconds(pid), at: performance.now() };
    for (let r = 0; r < rounds; r++) {
      const result = await hammer(service.port, query, roundMs);
      results.push(result.perSecond);
      latencies.push(...result.latencyMs);
    }
    const seconds = (performance.now() - before.at) / 1000;
    throughput[label] = {
      rounds: results.map((x) => round(x, 0)),
      median: median(results),
      latencyMs: roundedSummary(latencies),
      serviceCpuPercent: round((100 * ((await cpuSeconds(pid)) - before.cpu)) / seconds, 0),
    };
  }
  return { throughput, runsCpuPercent, jobs: jobs.length, ...counts };
}

/** CLIENTS loops POSTing `query` back to back over keep-alive connections for `ms`; answers requests a second. */
async function hammer(port: number, query: string, ms: number): Promise<{ perSecond: number; latencyMs: number[] }> {
  const body = JSON.stringify({ query });
  const latencyMs: number[] = [];
  const started = performance.now();
  const deadline = started + ms;
  let done = 0;
  const client = async () => {
    while (performance.now() < deadline) {
      const sent = performance.now();
      const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body,
      });
      const text = await response.text();
      if (response.status !== 200 || text.includes('"errors":'))
        throw new Error(`${query} answered ${response.status}: ${text.slice(0, 300)}`);
      latencyMs.push(performance.now() - sent);
      done++;
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, client));
  return { perSecond: done / ((performance.now() - started) / 1000), latencyMs };
}

/** How many runs and log entries the measured pages were read from. */
async function tableCounts(url: string): Promise<{ runs: number; logEntries: number }> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ runs: number; logEntries: number }[]>`
      select (select count(*) from job_runs)::int as runs, (select count(*) from log_entries)::int as "logEntries"`;
    return row!;
  } finally {
    await sql.end();
  }
}

// Schedules beyond the period (SPEC §3b) at one second: 1,000 period jobs, 1,000 cron jobs
// (`* * * * * *`, the same due times) and 1,000 retrying jobs, each on a service of its own. Cron
// due times cost a cron evaluation per claim instead of an addition; a retry costs a second claim
// and run. Compare the period row with `--baseline=<commit>` for the cost of this issue to jobs
// that only have a period.
import postgres from 'postgres';
import { type BenchContext, type ResultRow, type SectionResult, roundedSummary, sleep } from '../lib.ts';
import { type LoadResult, measureLoad, openLoad } from './lateness.ts';

const JOBS = 1000;

const loadRows = (label: string, r: LoadResult): ResultRow[] => [
  {
    metric: `${label}: own runs`,
    value: `${(r.ownShare * 100).toFixed(2)}%`,
    note: `${r.ownRuns} of ${r.dueTimes}; coalesced ${r.coalesced}, skipped ${r.skipped}`,
  },
  { metric: `${label}: lateness p50/p99/max`, value: `${r.latenessMs.p50} / ${r.latenessMs.p99} / ${r.latenessMs.max}`, unit: 'ms' },
  { metric: `${label}: CPU per run`, value: r.cpuPerRunUs, unit: 'µs', note: `${Math.round(r.cpuShare * 100)}% of one core` },
];

export default async function schedules(context: BenchContext): Promise<SectionResult> {
  const windowSeconds = context.quick ? 10 : 30;
  const period = await measureLoad(context, JOBS, { windowSeconds, label: 'schedules_period' });
  console.log('  period jobs measured');
  const cron = await measureLoad(context, JOBS, {
    windowSeconds,
    label: 'schedules_cron',
    input: () => ({ period: null, cron: '* * * * * *', timeZone: 'Europe/Moscow' }),
  });
  console.log('  cron jobs measured');
  const retry = await measureRetries(context, windowSeconds);
  console.log('  retrying jobs measured');
  return {
    name: 'schedules',
    rows: [...loadRows(`${JOBS} period jobs`, period), ...loadRows(`${JOBS} cron jobs`, cron), ...retry.rows],
    data: { period, cron, retry: retry.data },
  };
}

/**
 * 1,000 jobs at 0:0:2 calling an operation that fails every other call, retried once with no
 * backoff: a retry is due the moment its attempt failed, so its lateness is its start minus the
 * failed attempt's end.
 */
async function measureRetries(context: BenchContext, windowSeconds: number): Promise<{ rows: ResultRow[]; data: unknown }> {
  const load = await openLoad(context, 'schedules_retry', {
    input: () => ({ period: '0:0:2', externalCall: 'ServerOperationConnector:Flaky', retry: { maxAttempts: 2, backoffSeconds: 0 } }),
  });
  const sql = postgres(load.url, { max: 1, onnotice: () => {} });
  try {
    await load.grow(JOBS);
    await sleep(5000);
    const window = await load.measure(windowSeconds);
    const retries = await sql<{ lateness: number; status: string }[]>`
      select extract(epoch from r.started_at - f.finished_at) * 1000 as lateness, r.status
      from job_runs r join job_runs f on f.id = r.retry_of
      where r.trigger = 'RETRY' and r.started_at is not null and f.scheduled_at >= now() - ${windowSeconds + 10} * interval '1 second'`;
    const [failed] = await sql<{ failed: number; retried: number }[]>`
      select count(*)::int as failed, count(r.id)::int as retried
      from job_runs f left join job_runs r on r.retry_of = f.id and r.trigger = 'RETRY'
      where f.trigger = 'SCHEDULE' and f.status = 'FAILED' and f.finished_at < now() - interval '2 seconds'
        and f.scheduled_at >= now() - ${windowSeconds + 10} * interval '1 second'`;
    const lateness = roundedSummary(retries.map((r) => r.lateness));
    return {
      rows: [
        ...loadRows(`${JOBS} retrying jobs (first attempts)`, window as LoadResult),
        {
          metric: `${JOBS} retrying jobs: retries`,
          value: failed!.retried,
          note: `of ${failed!.failed} failed first attempts (${((failed!.retried / Math.max(1, failed!.failed)) * 100).toFixed(2)}%)`,
        },
        {
          metric: `${JOBS} retrying jobs: retry lateness p50/p99/max`,
          value: `${lateness.p50} / ${lateness.p99} / ${lateness.max}`,
          unit: 'ms',
        },
      ],
      data: { window, retries: lateness, ...failed },
    };
  } finally {
    await sql.end();
    await load.close();
  }
}

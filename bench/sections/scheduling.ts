// The scheduling sections: lateness at N = 1,000 and 10,000, and the highest sustained rate.
import { type BenchContext, median, type ResultRow, type SectionResult, sleep } from '../lib.ts';
import { type LoadResult, measureLoad, openLoad, type WindowResult } from './lateness.ts';

const rowsOf = (r: LoadResult): ResultRow[] => [
  {
    metric: `${r.jobs} jobs: own runs`,
    value: `${(r.ownShare * 100).toFixed(2)}%`,
    note: `${r.ownRuns} of ${r.dueTimes} due times; coalesced ${r.coalesced}, skipped ${r.skipped}, not succeeded ${r.notSucceeded}`,
  },
  { metric: `${r.jobs} jobs: lateness p50/p99/max`, value: `${r.latenessMs.p50} / ${r.latenessMs.p99} / ${r.latenessMs.max}`, unit: 'ms' },
  { metric: `${r.jobs} jobs: runs/s`, value: r.runsPerSecond },
  { metric: `${r.jobs} jobs: CPU per run`, value: r.cpuPerRunUs, unit: 'µs', note: `${Math.round(r.cpuShare * 100)}% of one core` },
  { metric: `${r.jobs} jobs: RSS idle / max`, value: `${r.rssIdleMb} / ${r.rssMaxMb}`, unit: 'MB' },
  {
    metric: `${r.jobs} jobs: /health p99`,
    value: r.healthMs.p99,
    unit: 'ms',
    note: r.healthFailures ? `${r.healthFailures} failed` : undefined,
  },
  { metric: `${r.jobs} jobs: SIGTERM to exit`, value: r.sigtermMs, unit: 'ms', note: r.sigtermExit },
  { metric: `${r.jobs} jobs: created through the API`, value: r.createdPerSecond, unit: 'jobs/s' },
];

export async function lateness(context: BenchContext): Promise<SectionResult> {
  const windowSeconds = context.quick ? 10 : 60;
  const results: LoadResult[] = [];
  for (const jobs of context.quick ? [200, 1000] : [1000, 10_000]) {
    const result = await measureLoad(context, jobs, { windowSeconds, label: `lateness_${jobs}` });
    console.log(`  ${jobs} jobs measured`);
    results.push(result);
  }
  return { name: 'lateness', rows: results.flatMap(rowsOf), data: results };
}

/** A load holds when p99 lateness stays within 100 ms and 99% of due times get a run of their own. */
const holds = (r: WindowResult) => r.latenessMs.p99 <= 100 && r.ownShare >= 0.99;

/**
 * One service, jobs added step by step: each step warms up 5 s and is measured for a window. The
 * first step that does not hold is the overload: there the process must still answer /health,
 * keep its memory bounded, coalesce, and end on SIGTERM within the grace + 5 s.
 */
export async function sustainedRate(context: BenchContext): Promise<SectionResult> {
  const steps = context.quick ? [500, 1000, 2000] : [2000, 4000, 6000, 8000, 10_000, 12_500, 15_000, 20_000];
  const windowSeconds = context.quick ? 10 : 20;
  const load = await openLoad(context, 'rate');
  const results: WindowResult[] = [];
  let sigterm: { ms: number; exit: string } | undefined;
  try {
    for (const jobs of steps) {
      await load.grow(jobs);
      await sleep(5000);
      const result = await load.measure(windowSeconds);
      results.push(result);
      console.log(`  ${jobs} jobs: ${result.runsPerSecond} runs/s, p99 ${result.latenessMs.p99} ms, own ${result.ownShare}`);
      if (!holds(result)) break;
    }
    sigterm = await load.terminate();
  } finally {
    await load.close();
  }
  const best = results.filter(holds).at(-1);
  const overload = results.find((r) => !holds(r));
  const last = results.at(-1)!;
  const rows: ResultRow[] = [
    {
      metric: 'sustained runs/s (p99 ≤ 100 ms, ≥ 99% own)',
      value: best?.runsPerSecond ?? 0,
      note: best ? `at ${best.jobs} jobs, p99 ${best.latenessMs.p99} ms, ${best.cpuPerRunUs} µs CPU/run` : 'no step held',
    },
  ];
  if (overload)
    rows.push(
      {
        metric: `overload (${overload.jobs} jobs): runs/s`,
        value: overload.runsPerSecond,
        note: `p99 ${overload.latenessMs.p99} ms, coalesced ${overload.coalesced}`,
      },
      { metric: 'overload: RSS max', value: overload.rssMaxMb, unit: 'MB' },
      {
        metric: 'overload: /health p99',
        value: overload.healthMs.p99,
        unit: 'ms',
        note: overload.healthFailures ? `${overload.healthFailures} failed` : undefined,
      },
    );
  rows.push({ metric: `SIGTERM at ${last.jobs} jobs to exit`, value: sigterm?.ms ?? NaN, unit: 'ms', note: sigterm?.exit });
  return { name: 'rate', rows, data: { steps: results, sigterm } };
}

/**
 * Cost over time: 1,000 jobs at 0:0:1 for BENCH_SOAK_MINUTES (default 30), lateness and RSS per
 * minute; the last 5 minutes against the first 5. Run it on a server with autovacuum off too:
 * BENCH_DATABASE_URL=… npm run bench -- --only=soak.
 */
export async function soak(context: BenchContext): Promise<SectionResult> {
  const minutes = Number(process.env['BENCH_SOAK_MINUTES'] ?? (context.quick ? 2 : 30));
  const edge = Math.max(1, Math.min(5, Math.floor(minutes / 2)));
  const load = await openLoad(context, 'soak');
  const perMinute: WindowResult[] = [];
  try {
    await load.grow(1000);
    await sleep(5000);
    for (let minute = 1; minute <= minutes; minute++) {
      const result = await load.measure(60);
      perMinute.push(result);
      console.log(
        `  minute ${minute}: p50 ${result.latenessMs.p50} / p99 ${result.latenessMs.p99} ms, coalesced ${result.coalesced}, RSS ${result.rssMaxMb} MB`,
      );
    }
  } finally {
    await load.close();
  }
  const pooled = (windows: WindowResult[]) => ({
    p50: median(windows.map((w) => w.latenessMs.p50)),
    p99: median(windows.map((w) => w.latenessMs.p99)),
  });
  const first = pooled(perMinute.slice(0, edge));
  const last = pooled(perMinute.slice(-edge));
  const coalesced = perMinute.reduce((sum, w) => sum + w.coalesced, 0);
  const change = (a: number, b: number) => `${b >= a ? '+' : ''}${Math.round(((b - a) / Math.max(a, 0.1)) * 100)}%`;
  return {
    name: 'soak',
    rows: [
      { metric: `soak ${minutes} min: first ${edge} min p50/p99`, value: `${first.p50} / ${first.p99}`, unit: 'ms' },
      {
        metric: `soak: last ${edge} min p50/p99`,
        value: `${last.p50} / ${last.p99}`,
        unit: 'ms',
        note: `${change(first.p50, last.p50)} / ${change(first.p99, last.p99)}`,
      },
      { metric: 'soak: coalesced', value: coalesced },
      { metric: 'soak: RSS first / last minute', value: `${perMinute[0]?.rssMaxMb} / ${perMinute.at(-1)?.rssMaxMb}`, unit: 'MB' },
    ],
    data: {
      databaseKind: context.databaseKind,
      perMinute: perMinute.map((w, i) => ({
        minute: i + 1,
        lateness: w.latenessMs,
        coalesced: w.coalesced,
        rssMb: w.rssMaxMb,
        cpuPerRunUs: w.cpuPerRunUs,
      })),
    },
  };
}

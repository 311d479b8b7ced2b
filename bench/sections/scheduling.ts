// The scheduling sections: lateness at N = 1,000 and 10,000, and the highest sustained rate.
import type { BenchContext, ResultRow, SectionResult } from '../lib.ts';
import { type LoadResult, measureLoad } from './lateness.ts';

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
const holds = (r: LoadResult) => r.latenessMs.p99 <= 100 && r.ownShare >= 0.99;

export async function sustainedRate(context: BenchContext): Promise<SectionResult> {
  const steps = context.quick ? [500, 1000, 2000] : [5000, 10_000, 15_000, 20_000, 25_000, 30_000];
  const windowSeconds = context.quick ? 10 : 30;
  const results: LoadResult[] = [];
  for (const jobs of steps) {
    const result = await measureLoad(context, jobs, { windowSeconds, label: `rate_${jobs}` });
    results.push(result);
    console.log(`  ${jobs} jobs: ${result.runsPerSecond} runs/s, p99 ${result.latenessMs.p99} ms, own ${result.ownShare}`);
    if (!holds(result)) break;
  }
  const best = results.filter(holds).at(-1);
  const overload = results.find((r) => !holds(r));
  const rows: ResultRow[] = [
    {
      metric: 'sustained runs/s (p99 ≤ 100 ms, ≥ 99% own)',
      value: best?.runsPerSecond ?? 0,
      note: best ? `at ${best.jobs} jobs, p99 ${best.latenessMs.p99} ms` : 'no step held',
    },
  ];
  if (overload)
    rows.push(
      { metric: `overload (${overload.jobs} jobs): runs/s`, value: overload.runsPerSecond, note: `coalesced ${overload.coalesced}` },
      { metric: `overload: RSS max`, value: overload.rssMaxMb, unit: 'MB' },
      {
        metric: `overload: /health p99`,
        value: overload.healthMs.p99,
        unit: 'ms',
        note: overload.healthFailures ? `${overload.healthFailures} failed` : undefined,
      },
      { metric: `overload: SIGTERM to exit`, value: overload.sigtermMs, unit: 'ms', note: overload.sigtermExit },
    );
  return { name: 'rate', rows, data: results };
}

// The sections of `npm run bench`, in the order they run: the baselines first, the soak last.
import { loadPeers } from '../peers/index.ts';
import type { BenchContext, SectionResult } from '../lib.ts';
import dashboard from './dashboard.ts';
import events from './events.ts';
import isolation from './isolation.ts';
import purge from './purge.ts';
import queries from './queries.ts';
import schedules from './schedules.ts';
import { lateness, soak, sustainedRate } from './scheduling.ts';

export interface Section {
  name: string;
  what: string;
  run(context: BenchContext): Promise<SectionResult>;
}

export const SECTIONS: Section[] = [
  {
    name: 'bare',
    what: 'the bare database: job_runs rows from a plain client, 1,000 a statement',
    run: async (context) => (await loadPeers()).bareInsert(context),
  },
  {
    name: 'graphile',
    what: 'graphile-worker draining 20,000 no-op jobs (local queue, batched completion)',
    run: async (context) => (await loadPeers()).graphileWorker(context),
  },
  {
    name: 'bullmq',
    what: 'BullMQ on the local Redis draining 20,000 no-op jobs at concurrency 50',
    run: async (context) => (await loadPeers()).bullmq(context),
  },
  { name: 'lateness', what: 'N jobs at 0:0:1 calling a no-op operation (isolated), N = 1,000 and 10,000', run: lateness },
  {
    name: 'schedules',
    what: '1,000 jobs each: period, cron (`* * * * * *`) and retrying (a failing operation, retried at once)',
    run: schedules,
  },
  { name: 'rate', what: 'the highest sustained runs/s before p99 lateness passes 100 ms, then overload', run: sustainedRate },
  { name: 'events', what: 'event delivery to 1,000 graphql-ws subscribers on a second instance', run: (context) => events(context) },
  { name: 'queries', what: '`jobs` (1,000 jobs) and `logEntries(first: 50)` beside a trivial query', run: queries },
  {
    name: 'dashboard',
    what: 'the dashboard in Chromium with 10,000 jobs: first rows, a search keystroke, a new job shown',
    run: dashboard,
  },
  { name: 'isolation', what: 'the per-call cost of running operations on worker threads', run: isolation },
  { name: 'purge', what: 'lateness while the housekeeping purges millions of old rows', run: purge },
  { name: 'soak', what: 'cost over time: 1,000 jobs at 0:0:1, lateness and RSS per minute', run: soak },
];

const numberOf = (results: SectionResult[], section: string, metric: string): number | undefined => {
  const row = results.find((r) => r.name.startsWith(section))?.rows.find((r) => r.metric.startsWith(metric));
  return typeof row?.value === 'number' ? row.value : undefined;
};

/** The targets that compare sections with each other, as far as this run measured them. */
export function comparisons(results: SectionResult[]): SectionResult | null {
  const ours = numberOf(results, 'rate', 'sustained runs/s');
  if (ours === undefined) return null;
  const bare = numberOf(results, 'Bare database', 'INSERT 1,000 rows');
  const peers = [numberOf(results, 'graphile-worker', 'graphile-worker'), numberOf(results, 'BullMQ', 'BullMQ')].filter(
    (x): x is number => x !== undefined,
  );
  const bestPeer = peers.length ? Math.max(...peers) : undefined;
  const rows = [];
  if (bestPeer)
    rows.push({
      metric: 'sustained runs/s ÷ best peer',
      value: `${(ours / bestPeer).toFixed(2)}×`,
      note: `target ≥ 1.5× (best peer ${bestPeer} jobs/s)`,
    });
  if (bare)
    rows.push({
      metric: 'sustained runs/s ÷ bare INSERT',
      value: `${(ours / bare).toFixed(2)}×`,
      note: `target ≥ 0.33× (bare ${bare} rows/s)`,
    });
  return rows.length ? { name: 'comparisons', rows } : null;
}

// Purging does not slow the scheduler (issue 11): a database holding millions of runs and log
// entries past their retention, 1,000 jobs at 0:0:1 calling the no-op operation, and the daily
// housekeeping due a minute or two after they run (HOUSEKEEPING_AT). Compares run lateness (start
// minus due time, from the rows) during the purge with a minute before and a minute after it, and
// says how long the purge took.
import postgres from 'postgres';
import { runMigrations } from '../../src/db/migrate.ts';
import { formatTimeOfDay, latestDue, type TimeOfDay } from '../../src/housekeeping/schedule.ts';
import {
  type BenchContext,
  dropDatabase,
  freshDatabase,
  round,
  type SectionResult,
  sleep,
  startService,
  type Summary,
  createJobs,
  roundedSummary,
} from '../lib.ts';

const MINUTE = 60_000;
const JOB_PREFIX = 'purge-bench';

interface Window {
  fromMs: number;
  toMs: number;
}

interface WindowFigures {
  seconds: number;
  dueTimes: number;
  ownRuns: number;
  coalesced: number;
  latenessMs: Summary;
}

/** Inserts `runs` finished runs and `entries` log entries, all 40+ days old, `chunk` rows a statement. */
async function seedOldHistory(sql: postgres.Sql, runs: number, entries: number): Promise<void> {
  const chunk = 250_000;
  for (let from = 1; from <= runs; from += chunk) {
    const to = Math.min(runs, from + chunk - 1);
    await sql`
      insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance)
      select 'old-' || (i % 1000), 'SCHEDULE', t, t + interval '3 ms', t + interval '5 ms', 'SUCCEEDED', 'bench'
      from generate_series(${from}::int, ${to}::int) i,
           lateral (select now() - interval '40 days' - i * interval '1 second' as t) due`;
  }
  for (let from = 1; from <= entries; from += chunk) {
    const to = Math.min(entries, from + chunk - 1);
    await sql`
      insert into log_entries (at, level, message, job_id)
      select now() - interval '40 days' - i * interval '1 second', 'INFO', 'old entry ' || i, 'old-' || (i % 1000)
      from generate_series(${from}::int, ${to}::int) i`;
  }
  // As a real database would be: old rows frozen and visible to index-only scans, statistics current.
  await sql.unsafe('vacuum analyze job_runs, log_entries');
}

/** Lateness of the bench jobs' scheduled runs due in `window`. */
async function windowFigures(sql: postgres.Sql, window: Window, jobs: number): Promise<WindowFigures> {
  const rows = await sql<{ lateness: number | null; missed: number }[]>`
    select extract(epoch from started_at - scheduled_at) * 1000 as lateness, missed
    from job_runs
    where trigger = 'SCHEDULE' and job_id like ${`${JOB_PREFIX}-%`}
      and scheduled_at >= ${new Date(window.fromMs)} and scheduled_at < ${new Date(window.toMs)}`;
  const started = rows.filter((r) => r.lateness !== null).map((r) => r.lateness!);
  const seconds = (window.toMs - window.fromMs) / 1000;
  return {
    seconds: round(seconds, 1),
    dueTimes: Math.round(jobs * seconds),
    ownRuns: started.length,
    coalesced: rows.reduce((sum, r) => sum + r.missed, 0),
    latenessMs: roundedSummary(started),
  };
}

export default async function purge(context: BenchContext): Promise<SectionResult> {
  const quick = context.quick;
  const oldRuns = quick ? 100_000 : 2_000_000;
  const oldEntries = quick ? 50_000 : 1_000_000;
  const jobs = quick ? 200 : 1000;
  const url = await freshDatabase(context, 'purge');
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  let service: Awaited<ReturnType<typeof startService>> | undefined;
  try {
    await runMigrations(url);
    const seeding = performance.now();
    await seedOldHistory(sql, oldRuns, oldEntries);
    const seedSeconds = (performance.now() - seeding) / 1000;

    // The housekeeping is due at the first whole minute that leaves time to start, create the
    // jobs, warm up and measure a window before it; the day before counts as done, so the service
    // does not catch up at start.
    const [clock] = await sql<{ now: Date }[]>`select clock_timestamp() as now`;
    const lead = (quick ? 1.5 : 2) * MINUTE;
    const dueMs = Math.ceil((clock!.now.getTime() + lead) / MINUTE) * MINUTE;
    const due = new Date(dueMs);
    const at: TimeOfDay = { hour: due.getUTCHours(), minute: due.getUTCMinutes() };
    const before = latestDue(dueMs - 1, at);
    await sql`insert into housekeeping_days (day, instance, claimed_at, finished_at)
              values (${before.day}, 'bench', ${new Date(before.dueMs)}, ${new Date(before.dueMs)})`;
    const day = latestDue(dueMs, at).day;

    service = await startService(context, url, { HOUSEKEEPING_AT: formatTimeOfDay(at), SERVER_OPERATIONS_WORKERS: '1' });
    await createJobs(service, jobs, { prefix: JOB_PREFIX });
    const readyMs = Date.now() + 5000;
    if (readyMs > dueMs - 10_000) throw new Error('the jobs were not ready 15 s before the housekeeping: the machine is too busy');

    // Wait for the housekeeping to finish (a generous bound: it should take a minute or two).
    let done: { claimedAt: Date; finishedAt: Date; instance: string } | undefined;
    for (const deadline = dueMs + 30 * MINUTE; Date.now() < deadline; await sleep(1000)) {
      [done] = await sql<{ claimedAt: Date; finishedAt: Date; instance: string }[]>`
        select claimed_at as "claimedAt", finished_at as "finishedAt", instance from housekeeping_days
        where day = ${day} and finished_at is not null`;
      if (done) break;
    }
    if (!done) throw new Error(`the housekeeping of ${day} did not finish within 30 minutes of ${due.toISOString()}`);
    const purgeStart = done.claimedAt.getTime();
    const purgeEnd = done.finishedAt.getTime();
    // Whole seconds: any k seconds hold exactly k due times of each job at 0:0:1.
    const windowBefore = {
      fromMs: purgeStart - Math.floor((purgeStart - Math.max(readyMs, purgeStart - MINUTE)) / 1000) * 1000,
      toMs: purgeStart,
    };
    const windowDuring = { fromMs: purgeStart, toMs: purgeStart + Math.max(1, Math.ceil((purgeEnd - purgeStart) / 1000)) * 1000 };
    // A window after the purge as long as the one before tells the purge from the machine's
    // other load; runs due in its last second have started a second later.
    const windowAfter = { fromMs: windowDuring.toMs, toMs: windowDuring.toMs + (windowBefore.toMs - windowBefore.fromMs) };
    await sleep(Math.max(0, windowAfter.toMs + 1500 - Date.now()));
    const figuresBefore = await windowFigures(sql, windowBefore, jobs);
    const figuresDuring = await windowFigures(sql, windowDuring, jobs);
    const figuresAfter = await windowFigures(sql, windowAfter, jobs);
    const [entry] = await sql<{ details: { purged: { table: string; deleted: number }[] } }[]>`
      select details from log_entries where message like ${`Daily housekeeping of ${day}:%`} and level = 'INFO'`;
    const deleted = Object.fromEntries((entry?.details.purged ?? []).map((p) => [p.table, p.deleted]));
    const purgeSeconds = (purgeEnd - purgeStart) / 1000;
    const rowsDeleted = (deleted['job_runs'] ?? 0) + (deleted['log_entries'] ?? 0);

    const latenessRow = (label: string, f: WindowFigures) => ({
      metric: `lateness ${label}`,
      value: `${f.latenessMs.p50} / ${f.latenessMs.p99} / ${f.latenessMs.max}`,
      unit: 'ms',
      note: `p50 / p99 / max over ${f.seconds} s: ${f.ownRuns} of ${f.dueTimes} due times ran on their own, ${f.coalesced} coalesced`,
    });
    return {
      name: 'purge',
      rows: [
        {
          metric: 'old rows seeded',
          value: oldRuns + oldEntries,
          note: `${oldRuns} runs, ${oldEntries} log entries, in ${round(seedSeconds, 0)} s`,
        },
        {
          metric: 'purge deleted',
          value: rowsDeleted,
          note: `job_runs ${deleted['job_runs'] ?? '?'}, log_entries ${deleted['log_entries'] ?? '?'}`,
        },
        {
          metric: 'purge took',
          value: round(purgeSeconds, 1),
          unit: 's',
          note: `${round(rowsDeleted / Math.max(purgeSeconds, 0.001), 0)} rows/s, batches of 5,000`,
        },
        latenessRow('before purge', figuresBefore),
        latenessRow('during purge', figuresDuring),
        latenessRow('after purge', figuresAfter),
      ],
      data: {
        jobs,
        oldRuns,
        oldEntries,
        housekeepingAt: formatTimeOfDay(at),
        day,
        done,
        deleted,
        before: figuresBefore,
        during: figuresDuring,
      },
    };
  } finally {
    await service?.stop(2000).catch(() => {});
    await sql.end();
    await dropDatabase(context, url).catch(() => {});
  }
}

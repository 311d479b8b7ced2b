// The kit of the tests that changes account for every due time (changes-*.test.ts): the
// database's clock, instances whose changes decide by it, the grid spans a test lays out and
// closes with its changes, and the coverage check (the chaos audit's). See
// changes-account-due-times.test.ts for why the database's clock decides.
import assert from 'node:assert/strict';
import { type GridSpan, gridCoverage } from '../../chaos/coverage.ts';
import type { Sql } from '../../src/db/client.ts';
import { databaseNow } from '../../src/db/jobs.ts';
import type { LogRow, RunRow } from '../../src/db/rows.ts';
import { JobService } from '../../src/jobs/job-service.ts';
import { ManualClock } from './clock.ts';
import { type Harness, harness, tickAndSettle } from './harness.ts';

/** The kit over the test database `sql` (read directly, never through a proxy a test cuts). */
export function dueTimes(sql: Sql) {
  /** The database's clock, in epoch ms. */
  async function dbNowMs(): Promise<number> {
    const [row] = await sql<{ ms: number }[]>`select floor(extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
    return row!.ms;
  }

  /** Waits (in real time) until the database's clock reaches `ms`. */
  async function untilDb(ms: number): Promise<void> {
    for (let now = await dbNowMs(); now < ms; now = await dbNowMs()) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, ms - now)));
    }
  }

  /** An instance on the database's clock for changes; its scheduler's clock is set from the database's before each tick. */
  function instance(db = sql, options: { name?: string; batchSize?: number } = {}): Harness {
    const h = harness(db, {
      clock: new ManualClock(0),
      instance: options.name ?? 'one',
      changeClock: 'database',
      ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    });
    h.connector.define('ok', async () => {});
    return h;
  }

  /** Claims what is due by the database's clock now, and lets those runs end. */
  async function tickNow(h: Harness) {
    h.clock.set(await dbNowMs());
    return tickAndSettle(h);
  }

  /**
   * The grid spans each job was enabled on, as the test laid them out: a span opens at a job's
   * first due time on a grid and closes at the last grid point at or before the instant the change
   * that ends it decided what was already due (its reading of the database's clock, which
   * `changeOf` learns). Every point of a span must be accounted for exactly once; a point after it
   * must not be (a claim or a SKIPPED run there is off the grid).
   *
   * The tests fire each change meant to come before a certain due time (`meantFor`), but a loaded
   * machine may make a change later than meant: a grid point after that moment which the change
   * still found due belongs to its span like any other, and `late` counts them, so that the
   * totals the tests expect hold however slow the machine is.
   */
  class Spans {
    #open = new Map<string, { firstDue: number; periodMs: number }>();
    #closed: GridSpan[] = [];
    #meantFor: number | null = null;
    #late = 0;

    open(jobId: string, firstDue: number, periodMs: number): void {
      assert.ok(!this.#open.has(jobId), `${jobId} has an open span already`);
      this.#open.set(jobId, { firstDue, periodMs });
    }

    /** The changes from here on are meant to come before the first due time after `ms` (database time) of the spans they close. */
    meantFor(ms: number): void {
      this.#meantFor = ms;
    }

    /** Closes a job's span at the instant (database time) its change decided what was already due. */
    close(jobId: string, decidedMs: number): void {
      const span = this.#open.get(jobId);
      if (!span) return;
      this.#open.delete(jobId);
      const { firstDue, periodMs } = span;
      const lastAtOrBefore = (t: number) => firstDue + Math.floor((t - firstDue) / periodMs) * periodMs;
      const last = lastAtOrBefore(decidedMs);
      if (this.#meantFor !== null) {
        const firstLate = Math.max(firstDue, lastAtOrBefore(this.#meantFor) + periodMs);
        if (last >= firstLate) this.#late += (last - firstLate) / periodMs + 1;
      }
      this.#closed.push({ jobId, firstDue: new Date(firstDue), lastDue: new Date(last), periodMs });
    }

    /** Ends every open span with a pause on `h`: the last change of each job. */
    async pauseAll(h: Harness): Promise<void> {
      await Promise.all([...this.#open.keys()].map((jobId) => changeOf(this, h, jobId, (jobs) => jobs.pause(jobId))));
    }

    get all(): GridSpan[] {
      assert.equal(this.#open.size, 0, 'every span is closed');
      return this.#closed;
    }

    /** Grid points the changes found due although they were meant to come before them. */
    get late(): number {
      return this.#late;
    }
  }

  /**
   * Fires a change that ends a job's span, through a job service of `h` whose reading of the
   * database's clock (the one that decides what is already due, taken in the change's transaction
   * with the job row locked: src/db/jobs.ts databaseNow) the test sees, and closes the span at that
   * instant. Nothing is left to guess from a bracket of readings around the change, which a slow
   * machine widens: every due time is on one side of the change or the other, and must be
   * accounted for exactly once on the one side and not at all on the other.
   */
  async function changeOf<T>(spans: Spans, h: Harness, jobId: string, change: (jobs: JobService) => Promise<T>): Promise<T> {
    const decided: number[] = [];
    const jobs = new JobService({
      sql: h.sql,
      clock: h.clock,
      bus: h.bus,
      registry: h.registry,
      scheduler: h.scheduler,
      databaseNow: async (tx) => {
        const ms = await databaseNow(tx);
        decided.push(ms);
        return ms;
      },
    });
    const before = await dbNowMs();
    const result = await change(jobs);
    const after = await dbNowMs();
    assert.equal(decided.length, 1, `${jobId}: the change decided what was due by the database's clock, once`);
    assert.ok(
      before <= decided[0]! && decided[0]! <= after,
      `${jobId}: it read the clock between its request (${before}) and its answer (${after}): ${decided[0]}`,
    );
    spans.close(jobId, decided[0]!);
    return result;
  }

  /** Every grid point of every span accounted for exactly once, and no run off the grid. */
  async function assertCovered(spans: GridSpan[]): Promise<number> {
    const coverage = await gridCoverage(sql, { spans });
    assert.deepEqual(
      [coverage.unaccounted, coverage.doubleAccounted, coverage.offGrid],
      [0, 0, 0],
      `every due time accounted for exactly once: ${JSON.stringify(coverage.examples)}`,
    );
    const [dup] = await sql<{ n: number }[]>`
      select count(*)::int as n from (select 1 from job_runs where trigger = 'SCHEDULE' group by job_id, scheduled_at having count(*) > 1) d`;
    assert.equal(dup!.n, 0, 'no two runs for one due time');
    return coverage.dueTimes;
  }

  const skippedOf = (jobId: string) =>
    sql<RunRow[]>`select * from job_runs where job_id = ${jobId} and status = 'SKIPPED' order by scheduled_at`;
  const warningsOf = (runId: string) => sql<LogRow[]>`select * from log_entries where run_id = ${runId} and level = 'WARNING'`;

  return { dbNowMs, untilDb, instance, tickNow, Spans, changeOf, assertCovered, skippedOf, warningsOf };
}

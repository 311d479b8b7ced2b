// Run ends are group-committed (issue 11): the ends of runs that finish together are written in
// one statement, each run still fenced by its own lease, and each caller gets its own answer.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { beforeEach, describe, it } from 'node:test';
import { GroupCommit } from '../src/db/group-commit.ts';
import type { RunRow } from '../src/db/rows.ts';
import { abandonRuns, finishRuns, type FinishedRun, renewLeases, type RunEnd } from '../src/db/runs.ts';
import { testDatabase } from './helpers/db.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);

const token = randomUUID();
const now = new Date('2027-03-28T00:59:59.000Z');

/** Resolves once `count` sessions wait for a row lock. */
async function waitForLockWaits(count: number): Promise<void> {
  for (;;) {
    const [row] = await sql<{ waiting: number }[]>`
      select count(*)::int as waiting from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()`;
    if (row!.waiting >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function runningRuns(count: number, holder: string, prefix = 'выгрузка'): Promise<RunRow[]> {
  return sql<RunRow[]>`
    insert into job_runs (job_id, trigger, scheduled_at, started_at, status, instance, lease_token, lease_expires_at)
    select ${prefix} || '-' || i, 'SCHEDULE', ${now}, ${now}, 'RUNNING', 'a', ${holder}, ${new Date(now.getTime() + 15_000)}
    from generate_series(1, ${count}) as i
    returning *`;
}

describe('run ends written together', () => {
  it('should write the ends of runs that finish at once in one statement, each run fenced by its own lease', async () => {
    const ours = await runningRuns(40, token);
    const [taken] = await runningRuns(1, randomUUID(), 'чужая'); // held by another instance: its end is refused
    const batches: number[] = [];
    const ends = new GroupCommit<RunEnd & { runId: string }, FinishedRun | null>((items) => {
      batches.push(items.length);
      return finishRuns(sql, token, items);
    });
    const later = new Date(now.getTime() + 30);
    const answers = await Promise.all([
      ...ours.map((run, i) =>
        ends.submit({
          runId: run.id,
          status: i % 2 ? 'SUCCEEDED' : 'FAILED',
          error: i % 2 ? null : `сбой ${i}`,
          now: later,
          log: i % 2 ? undefined : { level: 'ERROR', message: `Выгрузка ${i} failed`, details: { i } },
        }),
      ),
      ends.submit({ runId: taken!.id, status: 'SUCCEEDED', error: null, now: later }),
    ]);

    assert.deepEqual(batches, [41], 'one statement for all of them');
    assert.equal(answers.at(-1), null, 'the run another instance holds is refused');
    for (const [i, answer] of answers.slice(0, -1).entries()) {
      assert.equal(answer?.run.id, ours[i]!.id, 'each caller gets its own run');
      assert.equal(answer.run.status, i % 2 ? 'SUCCEEDED' : 'FAILED');
      assert.equal(answer.entry?.message ?? null, i % 2 ? null : `Выгрузка ${i} failed`);
      assert.equal(answer.entry?.runId ?? null, i % 2 ? null : ours[i]!.id);
    }
    const [counts] = await sql<{ running: number; failed: number; entries: number }[]>`
      select (select count(*)::int from job_runs where status = 'RUNNING') as running,
             (select count(*)::int from job_runs where status = 'FAILED' and error like 'сбой %') as failed,
             (select count(*)::int from log_entries where level = 'ERROR') as entries`;
    assert.deepEqual(counts, { running: 1, failed: 20, entries: 20 });
  });

  it('should write an end that arrives while a batch is in flight with the next batch, and fail each caller of a batch that fails', async () => {
    const [first, second, third] = await runningRuns(3, token);
    const batches: string[][] = [];
    let failNext = false;
    const ends = new GroupCommit<RunEnd & { runId: string }, FinishedRun | null>(async (items) => {
      batches.push(items.map((item) => item.runId));
      if (failNext) throw new Error('the database went away');
      return finishRuns(sql, token, items);
    });
    const end = (runId: string): RunEnd & { runId: string } => ({ runId, status: 'SUCCEEDED', error: null, now });
    const one = ends.submit(end(first!.id));
    await new Promise((resolve) => setImmediate(resolve)); // the first batch is on its way
    const two = ends.submit(end(second!.id));
    assert.equal((await one)?.run.status, 'SUCCEEDED');
    assert.equal((await two)?.run.status, 'SUCCEEDED');
    assert.deepEqual(batches, [[first!.id], [second!.id]]);

    failNext = true;
    await assert.rejects(ends.submit(end(third!.id)), /went away/);
    const [row] = await sql<RunRow[]>`select * from job_runs where id = ${third!.id}`;
    assert.equal(row!.status, 'RUNNING', 'a failed batch changed nothing');
  });
});

describe('run ends and lease renewals at the same time', () => {
  it('should never deadlock, whatever order each lists its runs in', async () => {
    // Under load a renewal asks for every run in flight while batches of ends are written: two
    // statements locking many of the same rows. Each locked them in its own order, and PostgreSQL
    // ended one of the two as a deadlock after a second's wait (runs stayed RUNNING meanwhile).
    const runs = await runningRuns(3000, token);
    const ids = runs.map((run) => run.id);
    const until = new Date(now.getTime() + 60_000);
    const failures: string[] = [];
    const record = (error: unknown) => void failures.push(String((error as Error).message));
    for (let round = 0; round < 6; round++) {
      const slice = ids.slice(round * 500, (round + 1) * 500);
      await Promise.all([
        renewLeases(sql, token, [...ids].reverse(), until).catch(record),
        finishRuns(
          sql,
          token,
          slice.map((runId) => ({ runId, status: 'SUCCEEDED' as const, error: null, now })),
        ).catch(record),
        renewLeases(sql, token, ids, until).catch(record),
        finishRuns(
          sql,
          token,
          [...slice].reverse().map((runId) => ({ runId, status: 'SUCCEEDED' as const, error: null, now })),
        ).catch(record),
      ]);
    }
    assert.deepEqual(failures, []);
    const [left] = await sql<{ count: number }[]>`select count(*)::int as count from job_runs where status = 'RUNNING'`;
    assert.equal(left!.count, 0, 'every end was written');
  });

  it('should never deadlock with the sweep of expired leases either', async () => {
    // A slow holder renews three runs whose leases have just expired while another instance
    // sweeps them. Read through the index of leases, the sweep meets them in the order their
    // leases expired (c, g, a), the renewal in id order (a, g, c). A third session holds g until
    // both wait for it; then each held the row the other needed next, and one was ended as a deadlock.
    const [a, g, c] = await runningRuns(3, token, 'sweep');
    const expired = (run: RunRow, ms: number) =>
      sql`update job_runs set lease_expires_at = ${new Date(now.getTime() - ms)} where id = ${run!.id}`;
    await expired(a!, 1);
    await expired(g!, 2);
    await expired(c!, 3);
    const gate = await sql.reserve();
    try {
      await gate`begin`;
      await gate`select id from job_runs where id = ${g!.id} for update`;
      const failures: string[] = [];
      const record = (error: Error) => void failures.push(error.message);
      const sweep = abandonRuns(sql, { now, expiredBefore: now, error: 'lease expired' }).catch(record);
      const renewal = renewLeases(sql, token, [a!.id, g!.id, c!.id], new Date(now.getTime() + 60_000)).catch(record);
      await waitForLockWaits(2);
      await gate`commit`;
      await Promise.all([sweep, renewal]);
      assert.deepEqual(failures, []);
    } finally {
      gate.release();
    }
  });
});

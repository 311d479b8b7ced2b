// SPEC §3: no silent clash in the claim — a claim that finds its due time recorded already says
// so — and what a change leaves behind is respected by later claims and resumes; a shutdown
// during a backlog stops claiming between batches. The kit and its clock: changes-account-due-times.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { JobRow, LogRow } from '../src/db/rows.ts';
import { firstGridPointAfter } from '../src/scheduling/grid.ts';
import { ManualClock } from './helpers/clock.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, nextEvent, tickAndSettle } from './helpers/harness.ts';
import { dueTimes } from './helpers/due-times.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries`);
const { dbNowMs, instance, skippedOf } = dueTimes(sql);

describe('no silent clash', () => {
  it('logs a WARNING naming the job and due time when a claim finds a run for that due time already', async () => {
    const h = harness(sql, { clock: new ManualClock(Date.parse('2026-01-01T00:00:00.000Z')) });
    h.connector.define('ok', async () => {});
    const job = await h.jobs.create({ id: 'clash', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    const due = job.nextDueAt!;
    // A row for the due time the claim will take, made by no claim of this job (nothing in the
    // service makes one any more): planted.
    const taken = new Date(due.getTime() + 2000);
    await sql`insert into job_runs (job_id, trigger, scheduled_at, finished_at, status, missed)
              values ('clash', 'SCHEDULE', ${taken}, ${taken}, 'SUCCEEDED', 0)`;
    const logged = nextEvent(h.bus, 'log:added', (p) => p.entry.jobId === 'clash' && p.entry.level === 'WARNING');
    h.clock.set(due.getTime() + 2500);
    assert.equal((await tickAndSettle(h)).length, 0, 'no second run for that due time');
    const [after] = await sql<JobRow[]>`select * from jobs where id = 'clash'`;
    assert.equal(after?.nextDueAt?.getTime(), due.getTime() + 3000);
    const { entry } = await logged;
    assert.equal(
      entry.message,
      `Job "clash" already has a run for its due time ${new Date(due.getTime() + 2000).toISOString()}; that due time (with 2 earlier due times coalesced into it) was not run again`,
    );
    assert.deepEqual(entry.details, { scheduledAt: new Date(due.getTime() + 2000).toISOString(), missed: 2 });
    const [stored] = await sql<LogRow[]>`select * from log_entries where id = ${entry.id}`;
    assert.equal(stored?.message, entry.message);
  });

  it('starts a job re-created with an old id after the due times its old runs stand for', async () => {
    const h = instance();
    const now = await dbNowMs();
    h.clock.set(now - 2500);
    await h.jobs.create({ id: 'again', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.set(now);
    // Its backlog is recorded at now − 500 when it is deleted.
    await h.jobs.delete('again');
    assert.deepEqual(
      (await skippedOf('again')).map((r) => r.scheduledAt.getTime()),
      [now - 500],
    );
    // An instance clock 1.5 s behind the database's, and a start on that very due time: the new
    // grid would begin on it; it begins one period later instead, so no claim can clash.
    h.clock.set(now - 1500);
    const again = await h.jobs.create({ id: 'again', name: 'x', externalCall: 'Test:ok', period: '0:0:2', startAt: new Date(now - 500) });
    assert.equal(again.nextDueAt!.getTime(), now + 1500);
  });

  it('moves a resume that an instance behind the database makes right after a pause past the due time the pause recorded', async () => {
    const h = instance();
    const now = await dbNowMs();
    h.clock.set(now - 2200);
    const job: JobRow = await h.jobs.create({ id: 'flip', name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    assert.equal(job.nextDueAt!.getTime(), now - 1200);
    h.clock.set(now);
    await h.jobs.pause('flip');
    const [skipped] = await skippedOf('flip');
    assert.equal(skipped?.scheduledAt.getTime(), now - 200);
    // Its clock 300 ms behind: the first grid point after it is the due time just recorded.
    h.clock.set(now - 300);
    const resumed = await h.jobs.resume('flip');
    assert.equal(resumed.nextDueAt!.getTime(), now + 800);
    assert.equal(firstGridPointAfter(job.anchorAt.getTime(), 1000, now - 300), now - 200);
  });
});

describe('shutting down during a backlog', () => {
  it('stops claiming between batches', async () => {
    const h = harness(sql, { clock: new ManualClock(Date.parse('2026-01-01T00:00:00.000Z')), batchSize: 5 });
    h.connector.define('ok', async () => {});
    for (let i = 0; i < 40; i++) await h.jobs.create({ id: `backlog-${i}`, name: 'x', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.advance(10_000);
    // The loop's first round claims its first batch; the shutdown begins while it is in flight.
    h.scheduler.start();
    await h.scheduler.stop(1000);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from job_runs`;
    assert.equal(row!.n, 5, 'one batch, then no more claims');
  });
});

// The short form of the fault scenarios (GitHub issues 4, 8 and 12; the long form is `npm run
// chaos`): real service processes on one PostgreSQL, faults injected while 8 of the 20 jobs are
// paused, resumed, re-periodised, deleted and run now a few ms after their due times and
// subscribers on every instance receive the job events; 6 of the jobs are those of SPEC §3b (two
// cron jobs, one of them in Europe/Berlin; two that fail some of the time and are retried; two
// QUEUE_ONE jobs whose runs outlast their period, chaos/mix.ts). Then the SQL audit must find no
// duplicate, no due time unaccounted for or accounted twice (changed jobs and cron due times
// included), no attempt run twice or unaccounted for, no early start, no run left RUNNING, no
// stale write, and no event missing without EVENTS_INTERRUPTED. Seconds per scenario
// (LEASE_SECONDS=2), scenarios side by side, each on a database of its own; the
// database-restart scenario on an embedded PostgreSQL of its own, which it restarts.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type postgres from 'postgres';
import { audit, auditClient } from '../chaos/audit.ts';
import type { GridSpan } from '../chaos/coverage.ts';
import { lateClaims } from '../chaos/fault-queries.ts';
import { changedSpans } from '../chaos/change-spans.ts';
import type { ChangeAttempt } from '../chaos/changes.ts';
import { faketimeMissing } from '../chaos/cluster.ts';
import { type ChaosServer, createDatabase, startChaosPostgres } from '../chaos/database.ts';
import { checkDelivery, type RunFacts } from '../chaos/delivery.ts';
import type { ReceivedEvent, Segment } from '../chaos/subscribers.ts';
import { runScenario } from '../chaos/faults.ts';
import type { ScenarioOptions } from '../chaos/scenario.ts';
import { explainFailures, formatScenario } from '../chaos/report.ts';
import { type ClaimJob, planJobClaim } from '../src/scheduling/claim-plan.ts';
import { createTestDatabase } from './helpers/db.ts';
import { killEveryProcess } from './helpers/process.ts';

let tmp: string;
const servers: ChaosServer[] = [];

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-chaos-'));
  await fs.chmod(tmp, 0o755); // as root, an embedded server runs as user postgres and must reach its directory
});
after(async () => {
  killEveryProcess();
  await Promise.all(servers.map((s) => s.stop().catch(() => {})));
  await fs.rm(tmp, { recursive: true, force: true });
});

const LEASE = 2;
/** Jobs the short form changes, of its 20 (period jobs only). */
const CHANGES = 8;
/** Of its 20 jobs, those of SPEC §3b. */
const MIX = { cron: 2, retry: 2, queue: 2 };
type Short = Omit<ScenarioOptions, 'databaseUrl' | 'workDir'>;

async function runShort(options: Short, databaseUrl?: string, server?: ChaosServer) {
  const url = databaseUrl ?? (await createTestDatabase());
  const lines: string[] = [];
  const result = await runScenario({
    databaseUrl: url,
    ...(server ? { server } : {}),
    workDir: path.join(tmp, options.scenario),
    log: (line) => lines.push(line),
    changeJobs: CHANGES,
    mix: MIX,
    subscribers: true,
    ...options,
  });
  // On a failure: every check, the examples of what failed and the changes of the jobs they name.
  const table = `${formatScenario(result)}\n${explainFailures(result)}\n--- progress ---\n${lines.join('\n')}`;
  const failed = result.checks.filter((c) => !c.ok);
  assert.ok(failed.length === 0 && result.ok, `${options.scenario}: ${failed.map((c) => c.name).join('; ')}\n${table}`);
  return result;
}

// Two scenarios at a time: each runs two instances with their operation workers, and a 2-core
// machine running them all at once (beside another test file) starves them into coalescing.
describe('chaos, short form', { concurrency: 2 }, () => {
  test('the audit finds duplicates, unaccounted and doubly accounted due times, runs left RUNNING and stale writes', async () => {
    const url = await createTestDatabase();
    const sql = auditClient(url);
    try {
      // A duplicate is impossible with the claim key in place: drop it to plant one.
      await sql`drop index job_runs_due_key`;
      const t = Date.parse('2026-01-01T00:00:00.000Z');
      const at = (s: number) => new Date(t + s * 1000);
      const job = (id: string, nextDue: number) => sql`
        insert into jobs (id, name, connector_id, method, period_seconds, anchor_at, next_due_at, created_at, updated_at)
        values (${id}, ${id}, 'ServerOperationConnector', 'Noop', 1, ${at(0)}, ${at(nextDue)}, ${at(0)}, ${at(0)})`;
      const run = async (
        jobId: string,
        due: number,
        status: string,
        missed = 0,
        extra: { finished?: number; lease?: number; error?: string } = {},
      ) => {
        const [row] = await sql<{ id: string }[]>`
          insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, missed, lease_expires_at, error)
          values (${jobId}, 'SCHEDULE', ${at(due)}, ${at(due)}, ${status === 'RUNNING' ? null : at(extra.finished ?? due + 0.1)},
                  ${status}, 'audit-test', ${missed}, ${extra.lease === undefined ? null : at(extra.lease)}, ${extra.error ?? null})
          returning id::text`;
        return row!.id;
      };
      // chaos-a: grid 1..5. Due 2 twice; due 4 both SKIPPED and in the missed count of due 5; one run off the grid.
      await job('chaos-a', 6);
      await run('chaos-a', 1, 'SUCCEEDED');
      await run('chaos-a', 2, 'SUCCEEDED');
      await run('chaos-a', 2, 'SUCCEEDED');
      await run('chaos-a', 4, 'SKIPPED');
      await run('chaos-a', 5, 'SUCCEEDED', 2);
      await run('chaos-a', 5.5, 'SUCCEEDED');
      // chaos-b: grid 1..3. Due 2 has nothing; due 3 is left RUNNING; due 1 was abandoned and then written to.
      await job('chaos-b', 4);
      const abandoned = await run('chaos-b', 1, 'ABANDONED', 0, {
        finished: 1.5,
        lease: 1.2,
        error: 'lease expired: the instance running it stopped',
      });
      await run('chaos-b', 3, 'RUNNING');
      await sql`insert into log_entries (at, level, message, job_id, run_id, details) values
        (${at(1.5)}, 'ERROR', 'was abandoned', 'chaos-b', ${abandoned}, '{"status":"ABANDONED"}'),
        (${at(2)}, 'INFO', 'chaos work done', 'chaos-b', ${abandoned}, null)`;
      // chaos-c: a run ABANDONED while still held would be a false lease loss.
      await job('chaos-c', 2);
      await run('chaos-c', 1, 'ABANDONED', 0, { finished: 1.5, lease: 2.5, error: 'lease lost: another instance took the run over' });
      // chaos-d: claimed at 1, never renewed, marked at 10: over the bound of 4 s, unless it was a
      // claim a frozen process (frozen at 1.1, resumed at 9) committed only on resume.
      await job('chaos-d', 2);
      const late = await run('chaos-d', 1, 'ABANDONED', 0, {
        finished: 10,
        lease: 3,
        error: 'lease expired: the instance running it stopped',
      });
      // chaos-e (no grid point): a MANUAL run that started before its scheduledAt; runs ended by
      // their holder that could not renew, and whose claim reply was lost (legitimate ABANDONED).
      await job('chaos-e', 1);
      const manual = (scheduled: number, started: number, status: string, error: string | null) => sql<{ id: string }[]>`
        insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, error, lease_expires_at)
        values ('chaos-e', 'MANUAL', ${at(scheduled)}, ${at(started)}, ${at(started + 0.5)}, ${status}, 'audit-test', ${error}, ${at(started + 2)})
        returning id::text`;
      const [early] = await manual(3, 2.999, 'SUCCEEDED', null);
      await manual(4, 4, 'ABANDONED', 'lease lost: could not renew within 2 s');
      await manual(5, 5, 'ABANDONED', 'claim reply lost: the run was claimed but its holder never started it');
      // Jobs outside the prefix are not audited.
      await job('other', 3);
      await run('other', 1, 'SUCCEEDED');

      const report = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: 2 });
      assert.equal(report.jobs, 5);
      assert.equal(report.dueTimes, 10);
      assert.equal(report.duplicates, 1);
      assert.deepEqual(report.examples.unaccounted, [{ jobId: 'chaos-b', dueAt: at(2).toISOString() }]);
      assert.equal(report.unaccounted, 1);
      assert.deepEqual(
        report.examples.doubleAccounted.map((e) => [e.jobId, e.dueAt, e.count]),
        [
          ['chaos-a', at(2).toISOString(), 2],
          ['chaos-a', at(4).toISOString(), 2],
        ],
      );
      assert.equal(report.offGrid, 1);
      assert.equal(report.leftRunning, 1);
      assert.deepEqual(report.coalesced, { runs: 1, missed: 2 });
      assert.equal(report.skipped, 1);
      // The SKIPPED run at 4 has no WARNING.
      assert.equal(report.skippedUnlogged, 1);
      assert.equal(report.earlyStarts, 1);
      assert.deepEqual(
        report.examples.earlyStarts.map((e) => [e.runId, e.trigger]),
        [[early!.id, 'MANUAL']],
      );
      assert.equal(report.staleLogWrites, 1);
      assert.equal(report.examples.staleLogWrites[0]!.message, 'chaos work done');
      assert.deepEqual(
        [
          report.abandoned.total,
          report.abandoned.leaseExpired,
          report.abandoned.leaseLost,
          report.abandoned.replyLost,
          report.abandoned.other,
        ],
        [5, 2, 1, 1, 1],
      );
      assert.deepEqual(
        report.examples.abandonedOther.map((e) => e.error),
        ['lease lost: another instance took the run over'],
      );
      // 10 s − (3 s − 2 s) after its last renewal.
      assert.equal(report.abandoned.latencyMs.max, 9000);
      assert.deepEqual(report.examples.overBound, [{ runId: late, instance: 'audit-test', latencyMs: 9000 }]);
      assert.equal(report.abandoned.overBound, 1);

      assert.deepEqual(await lateClaims(sql, 'audit-test', at(1.1), at(9), []), [late]);
      assert.deepEqual(await lateClaims(sql, 'audit-test', at(1.1), at(9), [late]), []);
      const excluding = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: 2, excludeFromBound: [late] });
      // 1.5 s − (1.2 s − 2 s) after its last renewal.
      assert.equal(excluding.abandoned.latencyMs.max, 2300);
      assert.deepEqual([excluding.abandoned.overBound, excluding.abandoned.excluded], [0, 1]);
    } finally {
      await sql.end();
    }
  });

  test('the audit replays changed jobs from their audit trail: a due time a change lost, a run while paused, brackets either way but in order', async () => {
    const url = await createTestDatabase();
    const sql = auditClient(url);
    try {
      const t = Date.parse('2026-01-01T00:00:00.000Z');
      const at = (s: number) => new Date(t + s * 1000);
      const ms = (s: number) => t + s * 1000;
      const entry = (jobId: string, s: number, message: string, details: Record<string, unknown> = {}) => sql`
        insert into log_entries (at, level, message, job_id, details) values (${at(s)}, 'INFO', ${`Job "${jobId}" ${message}`}, ${jobId}, ${sql.json(details as postgres.JSONValue)})`;
      const created = (jobId: string) => entry(jobId, 0, 'created', { period: '0:00:01', enabled: true });
      const row = (id: string, anchor: number, period: number, nextDue: number, enabled = true) => sql`
        insert into jobs (id, name, connector_id, method, period_seconds, enabled, anchor_at, next_due_at, created_at, updated_at)
        values (${id}, ${id}, 'ServerOperationConnector', 'Noop', ${period}, ${enabled}, ${at(anchor)}, ${at(nextDue)}, ${at(0)}, ${at(0)})`;
      const run = (jobId: string, due: number, status = 'SUCCEEDED', missed = 0) => sql`
        insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, missed)
        values (${jobId}, 'SCHEDULE', ${at(due)}, ${status === 'SKIPPED' ? null : at(due)}, ${at(due + 0.1)}, ${status}, 'audit-test', ${missed})`;
      const call = (jobId: string, action: ChangeAttempt['action'], sent: number, answered: number | null): ChangeAttempt => ({
        jobId,
        action,
        afterDue: null,
        sentAt: ms(sent),
        answeredAt: answered === null ? null : ms(answered),
        outcome: answered === null ? 'timeout' : 'ok',
        port: 1,
      });

      // chaos-p: paused 5 ms after its due time 3, which nothing accounts for (lost); a run at 5
      // while paused (off the grid); resumed at 5.5 (next due 6); re-periodised to 2 s at 6.5
      // (anchor 6.5, due 8.5), which ran.
      await created('chaos-p');
      await entry('chaos-p', 3.005, 'paused: note', { note: 'note' });
      await entry('chaos-p', 5.5, 'resumed');
      await entry('chaos-p', 6.5, 'updated', { period: '0:00:02' });
      await row('chaos-p', 6.5, 2, 10.5);
      for (const due of [1, 2, 5, 6, 8.5]) await run('chaos-p', due);
      // chaos-q: deleted at 2.003, answered only at 3.2: due time 2 must be accounted (it is, in
      // the missed count of the SKIPPED run the delete recorded at 3, which may or may not have been due).
      await created('chaos-q');
      await entry('chaos-q', 2.003, 'deleted');
      await run('chaos-q', 1);
      await run('chaos-q', 3, 'SKIPPED', 1);
      // chaos-r: paused at 1.5, answered at 4.2: of due times 2, 3 and 4 only 3 was accounted; 2
      // cannot have been left out before an accounted one (unaccounted), 4 can.
      await created('chaos-r');
      await entry('chaos-r', 1.5, 'paused');
      await row('chaos-r', 0, 1, 5, false);
      await run('chaos-r', 1);
      await run('chaos-r', 3);
      // chaos-s: re-periodised at 1.5 by a call with no answer: its bracket runs to the end; the run
      // the scheduler would not have made at 2 is allowed, the next grid's due time 3.5 too.
      await created('chaos-s');
      await entry('chaos-s', 1.5, 'updated', { period: '0:00:02' });
      await row('chaos-s', 1.5, 2, 5.5);
      for (const due of [1, 2, 3.5]) await run('chaos-s', due);
      // chaos-u: never changed, audited on its row.
      await row('chaos-u', 0, 1, 3);
      for (const due of [1, 2]) await run('chaos-u', due);

      const attempts = [
        call('chaos-p', 'pause', 3.004, 3.02),
        call('chaos-p', 'resume', 5.49, 5.51),
        call('chaos-p', 'period', 6.49, 6.51),
        call('chaos-q', 'pause', 1.2, 1.3), // failed, nothing committed
        call('chaos-q', 'delete', 2.0, 3.2),
        call('chaos-r', 'pause', 1.49, 4.2),
        call('chaos-s', 'period', 1.49, null),
      ];
      attempts[3]!.outcome = 'error';
      const replayed = await changedSpans(sql, {
        jobIds: ['chaos-p', 'chaos-q', 'chaos-r', 'chaos-s'],
        attempts,
        untilMs: ms(20),
        marginMs: 0,
      });
      assert.deepEqual(replayed.mismatches, []);
      assert.deepEqual(replayed.committed, { pause: 2, resume: 1, period: 2, delete: 1 });
      // chaos-s's call got no answer but committed; chaos-q's pause failed and did not.
      assert.deepEqual([replayed.unmatched, replayed.committedDespiteFailure, replayed.failedUncommitted], [0, 1, 1]);
      const show = (s: GridSpan) => [
        s.jobId,
        s.firstDue.getTime() - t,
        s.lastDue.getTime() - t,
        s.periodMs,
        s.unsureAfter ? s.unsureAfter.getTime() - t : null,
        s.unsureUntil ? s.unsureUntil.getTime() - t : null,
      ];
      assert.deepEqual(replayed.spans.map(show), [
        ['chaos-p', 1000, 3000, 1000, 3005, null],
        ['chaos-p', 6000, 6000, 1000, 6500, null],
        ['chaos-p', 8500, 8500, 2000, null, 6510],
        ['chaos-q', 1000, 3000, 1000, 2003, null],
        ['chaos-r', 1000, 4000, 1000, 1500, null],
        ['chaos-s', 1000, 20000, 1000, 1500, null],
        ['chaos-s', 3500, 3500, 2000, null, 20000],
      ]);

      const report = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: 2, spans: replayed.spans });
      assert.equal(report.jobs, 5);
      assert.deepEqual(
        report.examples.unaccounted.map((e) => [e.jobId, Date.parse(e.dueAt) - t]),
        [
          ['chaos-r', 2000],
          ['chaos-p', 3000],
        ],
      );
      assert.deepEqual(
        report.examples.offGrid.map((e) => [e.jobId, Date.parse(e.dueAt) - t]),
        [['chaos-p', 5000]],
      );
      assert.equal(report.doubleAccounted, 0);
      // Unsure: q 3; r 2, 3, 4; s 2 … 20 and 3.5 — left out: r 4 and s 3 … 20.
      assert.deepEqual(report.unsure, { dueTimes: 1 + 3 + 19 + 1, leftOut: 1 + 18 });
      // Required and accounted: p 1, 2, 3, 6, 8.5; q 1, 2, 3; r 1, 2, 3; s 1, 2, 3.5; u 1, 2.
      assert.equal(report.dueTimes, 5 + 3 + 3 + 3 + 2);
    } finally {
      await sql.end();
    }
  });

  test('the audit checks cron due times (daylight saving included) and QUEUE_ONE due times still waiting: a cron due time lost, one accounted twice, one off the pattern', async () => {
    const url = await createTestDatabase();
    const sql = auditClient(url);
    try {
      const t = Date.parse('2026-01-01T00:00:00.000Z');
      const at = (s: number) => new Date(t + s * 1000);
      const cronJob = (id: string, cron: string, zone: string, created: Date, nextDue: Date) => sql`
        insert into jobs (id, name, connector_id, method, cron, time_zone, anchor_at, next_due_at, created_at, updated_at)
        values (${id}, ${id}, 'ServerOperationConnector', 'Noop', ${cron}, ${zone}, ${created}, ${nextDue}, ${created}, ${created})`;
      const run = (jobId: string, due: Date, missed = 0, status = 'SUCCEEDED') => sql`
        insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, missed)
        values (${jobId}, 'SCHEDULE', ${due}, ${status === 'SKIPPED' ? null : due}, ${new Date(due.getTime() + 100)}, ${status}, 'audit-test', ${missed})`;

      // chaos-c1, every 2 s from its creation at 0.5 to before 12: due 2, 4, 6, 8, 10. 4 has
      // nothing; 6 has a run and is in the missed count of the run at 10 (with 8); 7 is no instant.
      await cronJob('chaos-c1', '*/2 * * * * *', 'UTC', at(0.5), at(12));
      for (const [due, missed] of [
        [2, 0],
        [6, 0],
        [7, 0],
        [10, 2],
      ] as const)
        await run('chaos-c1', at(due), missed);
      // chaos-c2, 02:30 Berlin daily across the spring-forward of 2027-03-28 (02:30 does not exist:
      // it runs at 03:00 CEST = 01:00Z): 03-27 01:30Z, 03-28 01:00Z (coalesced into 03-29 00:30Z,
      // CEST), 03-30 00:30Z (SKIPPED). A grid of 24 h would want 03-28 01:30Z and 03-29 01:30Z.
      await cronJob('chaos-c2', '30 2 * * *', 'Europe/Berlin', new Date('2027-03-26T12:00:00Z'), new Date('2027-03-31T00:30:00Z'));
      await run('chaos-c2', new Date('2027-03-27T01:30:00Z'));
      await run('chaos-c2', new Date('2027-03-29T00:30:00Z'), 1);
      await run('chaos-c2', new Date('2027-03-30T00:30:00Z'), 0, 'SKIPPED');
      // chaos-c3: its due time 4 waits under QUEUE_ONE (with 3 coalesced into it); next due 5.
      await cronJob('chaos-c3', '* * * * * *', 'UTC', at(0), at(5));
      await run('chaos-c3', at(1));
      await run('chaos-c3', at(2));
      await sql`update jobs set overlap = 'QUEUE_ONE', queued_due_at = ${at(4)}, queued_missed = 1 where id = 'chaos-c3'`;
      // chaos-q: a period job whose due time 3 waits under QUEUE_ONE; next due 4.
      await sql`
        insert into jobs (id, name, connector_id, method, period_seconds, overlap, anchor_at, next_due_at, created_at, updated_at, queued_due_at)
        values ('chaos-q', 'q', 'ServerOperationConnector', 'Noop', 1, 'QUEUE_ONE', ${at(0)}, ${at(4)}, ${at(0)}, ${at(0)}, ${at(3)})`;
      await run('chaos-q', at(1));
      await run('chaos-q', at(2));

      const report = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: 2 });
      assert.equal(report.jobs, 4);
      // c1 2 … 10; c2 03-27, 03-28, 03-29, 03-30; c3 1 … 4; q 1 … 3.
      assert.deepEqual(report.cron, { jobs: 3, dueTimes: 5 + 4 + 4 });
      assert.equal(report.dueTimes, 5 + 4 + 4 + 3);
      assert.equal(report.queuedPending, 2);
      const show = (items: { jobId: string; dueAt: string; count?: number }[]) => items.map((e) => [e.jobId, e.dueAt, e.count ?? 1]);
      assert.deepEqual(show(report.examples.unaccounted), [['chaos-c1', at(4).toISOString(), 1]]);
      assert.deepEqual(show(report.examples.doubleAccounted), [['chaos-c1', at(6).toISOString(), 2]]);
      assert.deepEqual(show(report.examples.offGrid), [['chaos-c1', at(7).toISOString(), 1]]);
      assert.deepEqual([report.unaccounted, report.doubleAccounted, report.offGrid], [1, 1, 1]);

      // A span a caller gives: c1 from 4 on, its end in a bracket after 8.5 — 10 (accounted) stays required, nothing is left out.
      const spans = await audit(sql, {
        jobPrefix: 'chaos-',
        leaseSeconds: 2,
        spans: [{ jobId: 'chaos-c1', firstDue: at(4), lastDue: at(11), cron: '*/2 * * * * *', timeZone: 'UTC', unsureAfter: at(8.5) }],
      });
      assert.deepEqual(spans.unsure, { dueTimes: 1, leftOut: 0 });
      // 2 is off the span now; 4 still unaccounted.
      assert.deepEqual(show(spans.examples.offGrid), [
        ['chaos-c1', at(2).toISOString(), 1],
        ['chaos-c1', at(7).toISOString(), 1],
      ]);
      assert.deepEqual(show(spans.examples.unaccounted), [['chaos-c1', at(4).toISOString(), 1]]);
    } finally {
      await sql.end();
    }
  });

  test('the audit checks retries: an attempt run twice, a retry without a failed attempt, a wrong retryOf, an attempt above the maximum, a failed attempt whose retry was lost', async () => {
    const url = await createTestDatabase();
    const sql = auditClient(url);
    try {
      // Two runs of one attempt are impossible with the key in place: drop it to plant one.
      await sql`drop index job_runs_retry_key`;
      const t = Date.parse('2026-01-01T00:00:00.000Z');
      const at = (s: number) => new Date(t + s * 1000);
      const job = (id: string, maxAttempts: number, nextDue: number) => sql`
        insert into jobs (id, name, connector_id, method, period_seconds, retry_max_attempts, anchor_at, next_due_at, created_at, updated_at)
        values (${id}, ${id}, 'ServerOperationConnector', 'Flaky', 1, ${maxAttempts}, ${at(0)}, ${at(nextDue)}, ${at(0)}, ${at(0)})`;
      /** A run of attempt `attempt` of due time `due`, from `start` for 0.1 s; its end entry when it failed. */
      const attempt = async (jobId: string, due: number, n: number, status: string, start: number, retryOf: string | null = null) => {
        const [row] = await sql<{ id: string }[]>`
          insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, instance, attempt, retry_of)
          values (${jobId}, ${n === 1 ? 'SCHEDULE' : 'RETRY'}, ${at(due)}, ${at(start)}, ${at(start + 0.1)}, ${status}, 'audit-test', ${n}, ${retryOf})
          returning id::text`;
        if (status === 'FAILED' || status === 'TIMED_OUT')
          await sql`insert into log_entries (at, level, message, job_id, run_id, details)
                    values (${at(start + 0.1)}, 'ERROR', 'failed', ${jobId}, ${row!.id}, ${sql.json({ status })})`;
        return row!.id;
      };
      const entry = (jobId: string, s: number, level: string, message: string, details: Record<string, string | number> | null = null) =>
        sql`insert into log_entries (at, level, message, job_id, details) values (${at(s)}, ${level}, ${message}, ${jobId}, ${details === null ? null : sql.json(details)})`;

      // chaos-r1 (3 attempts): due 1 retried twice, the last succeeding; due 2's attempt 2 ran twice;
      // due 3's attempt 2 follows a success; due 4 timed out and nothing follows.
      await job('chaos-r1', 3, 5);
      const first1 = await attempt('chaos-r1', 1, 1, 'FAILED', 1);
      await attempt('chaos-r1', 1, 2, 'FAILED', 1.2, first1);
      await attempt('chaos-r1', 1, 3, 'SUCCEEDED', 1.4, first1);
      const first2 = await attempt('chaos-r1', 2, 1, 'FAILED', 2);
      await attempt('chaos-r1', 2, 2, 'SUCCEEDED', 2.2, first2);
      await attempt('chaos-r1', 2, 2, 'SUCCEEDED', 2.3, first2);
      const first3 = await attempt('chaos-r1', 3, 1, 'SUCCEEDED', 3);
      const orphan = await attempt('chaos-r1', 3, 2, 'SUCCEEDED', 3.2, first3);
      const lost = await attempt('chaos-r1', 4, 1, 'TIMED_OUT', 4);
      // chaos-r2 (2 attempts): due 1's retry dropped with its WARNING; due 2's still waiting;
      // due 3's attempt 2 names the wrong first attempt, and an attempt 3 follows it.
      await job('chaos-r2', 2, 4);
      await attempt('chaos-r2', 1, 1, 'FAILED', 1);
      await entry(
        'chaos-r2',
        2,
        'WARNING',
        'Job "chaos-r2" dropped its retry (attempt 2) of the run due at …: its next due time arrived first',
        {
          attempt: 2,
          scheduledAt: at(1).toISOString(),
        },
      );
      const pending = await attempt('chaos-r2', 2, 1, 'FAILED', 2);
      await sql`update jobs set retry_at = ${at(3.5)}, retry_attempt = 2, retry_of = ${pending}, retry_scheduled_at = ${at(2)} where id = 'chaos-r2'`;
      await attempt('chaos-r2', 3, 1, 'FAILED', 3);
      const wrong = await attempt('chaos-r2', 3, 2, 'FAILED', 3.2, pending);
      const over = await attempt('chaos-r2', 3, 3, 'SUCCEEDED', 3.4, pending);
      // chaos-r3 (3 attempts): paused after due 1's attempt ended (the pause cleared its retry);
      // due 2's attempt ended after a pause, so its retry was written on the paused job: gone.
      await job('chaos-r3', 3, 3);
      await attempt('chaos-r3', 1, 1, 'FAILED', 1);
      await entry('chaos-r3', 1.5, 'INFO', 'Job "chaos-r3" paused');
      await entry('chaos-r3', 1.8, 'INFO', 'Job "chaos-r3" resumed');
      await entry('chaos-r3', 1.9, 'INFO', 'Job "chaos-r3" paused');
      const afterPause = await attempt('chaos-r3', 2, 1, 'FAILED', 2);
      // chaos-r4 is gone (deleted): its failed attempt's retry went with it.
      await attempt('chaos-r4', 1, 1, 'FAILED', 1);

      const { retries } = await audit(sql, { jobPrefix: 'chaos-', leaseSeconds: 2 });
      assert.deepEqual(retries.examples.attemptDuplicates, [{ jobId: 'chaos-r1', scheduledAt: at(2).toISOString(), attempt: 2, count: 2 }]);
      assert.deepEqual(
        retries.examples.orphans.map((o) => [o.runId, o.previous]),
        [[orphan, 'SCHEDULE SUCCEEDED']],
      );
      assert.deepEqual(
        retries.examples.wrongRetryOf.map((w) => [w.runId, w.retryOf]),
        [
          [wrong, pending],
          [over, pending],
        ],
      );
      assert.deepEqual(
        retries.examples.overMax.map((o) => [o.runId, o.attempt, o.maxAttempts]),
        [[over, 3, 2]],
      );
      assert.deepEqual(
        retries.examples.unaccounted.map((u) => [u.runId, u.status]),
        [
          [lost, 'TIMED_OUT'],
          [afterPause, 'FAILED'],
        ],
      );
      assert.deepEqual(
        [retries.attemptDuplicates, retries.orphans, retries.wrongRetryOf, retries.overMax, retries.unaccounted],
        [1, 1, 2, 1, 2],
      );
      // r1: due 1 × 2, due 2, due 4; r2: due 1, 2, 3; r3: due 1, 2; r4: due 1.
      assert.deepEqual(
        [retries.runs, retries.nonFinalFailures, retries.retried, retries.pending, retries.dropped, retries.clearedByChange],
        [7, 10, 4, 1, 1, 2],
      );
    } finally {
      await sql.end();
    }
  });

  test('a QUEUE_ONE due time that starts drops the retry still waiting, with its WARNING (the chaos audit found such retries lost)', () => {
    // Found by a chaos run: a QUEUE_ONE job (period 1 s, timeout 2 s, 3 attempts at once) timed
    // out on its due time 11 at 13.578 while 12 waited; 12 started at 13.665, the retry of 11
    // (attempt 2) still waiting behind it; 12 failed at 13.698 and its retry took the job's
    // single retry slot: the retry of 11 never ran, and nothing said so.
    const s = (seconds: number) => new Date(seconds * 1000);
    const job = {
      id: 'q',
      enabled: true,
      periodSeconds: 1,
      cron: null,
      timeZone: null,
      anchorAt: s(0),
      endAt: null,
      overlap: 'QUEUE_ONE',
      misfire: 'RUN_ONCE',
      nextDueAt: s(14),
      queuedDueAt: s(12),
      queuedMissed: 0,
      retryAt: s(13.578),
      retryAttempt: 2,
      retryOf: '35',
      retryScheduledAt: s(11),
      running: 0,
    } as unknown as ClaimJob;
    const plan = planJobClaim(job, 13_665)!;
    assert.deepEqual(
      plan.runs.map((r) => [r.trigger, r.scheduledAt.getTime(), r.status]),
      [['SCHEDULE', 12_000, 'RUNNING']],
    );
    assert.equal(plan.after.retryCleared, true);
    assert.deepEqual(
      plan.entries.map((e) => [e.level, e.message]),
      [['WARNING', `Job "q" dropped its retry (attempt 2) of the run due at ${s(11).toISOString()}: its next due time arrived first`]],
    );
  });

  test('the delivery check finds silent gaps, duplicates, runs out of order and events that disagree; excuses interruptions and closed connections; tells events that died with a killed instance apart', () => {
    const t = Date.parse('2026-01-01T00:00:00.000Z');
    const fact = (
      id: string,
      jobId: string,
      status: string,
      instance: string,
      started: number | null,
      finished: number,
      error: string | null = null,
    ): RunFacts => ({
      id,
      jobId,
      status,
      instance,
      error,
      startedAt: started === null ? null : t + started,
      finishedAt: t + finished,
    });
    const runs: RunFacts[] = [
      fact('10', 'a', 'SUCCEEDED', 'i1', 1000, 1100),
      fact('11', 'a', 'SUCCEEDED', 'i1', 2000, 2100),
      fact('12', 'a', 'SKIPPED', 'i2', null, 2050),
      fact('13', 'b', 'FAILED', 'i2', 5000, 5100, 'boom'),
      // i1 (process 99) is killed at 4.5 s: it had recorded 14's end and 15's start, and sent neither; 15's end comes from i2.
      fact('14', 'c', 'SUCCEEDED', 'i1', 4400, 4450),
      fact('15', 'c', 'ABANDONED', 'i1', 4460, 6000, 'lease expired: the instance running it stopped'),
    ];
    const ev = (kind: string, runId: string, status?: string): ReceivedEvent => {
      const run = runs.find((r) => r.id === runId)!;
      const at = kind === 'RUN_STARTED' ? run.startedAt! : run.finishedAt!;
      return {
        kind,
        at,
        jobId: run.jobId,
        runId,
        status: status ?? (kind === 'RUN_STARTED' ? 'RUNNING' : run.status),
        instance: run.instance,
      };
    };
    const upTo11 = [
      ev('RUN_STARTED', '10'),
      ev('RUN_SUCCEEDED', '10'),
      ev('RUN_STARTED', '11'),
      ev('RUN_SKIPPED', '12'),
      ev('RUN_SUCCEEDED', '11'),
    ];
    const after11 = [ev('RUN_STARTED', '14'), ev('RUN_STARTED', '13'), ev('RUN_FAILED', '13'), ev('RUN_FAILED', '15')];
    const segment = (index: number, events: ReceivedEvent[], end: Segment['end'], extra: Partial<Segment> = {}): Segment => ({
      instance: 'i2',
      transport: 'graphql-ws',
      index,
      pid: 2,
      openedAt: t,
      after: 9,
      events,
      end,
      endedAt: end === 'open' ? null : t + 9000,
      error: null,
      ...extra,
    });
    const report = checkDelivery({
      segments: [
        segment(0, [...upTo11, ...after11], 'open'),
        // Lost 11's end although 14's start, sent by i1 later, arrived; got 10's start twice; 13's end says it succeeded.
        segment(
          1,
          [...upTo11.slice(0, 4), ev('RUN_STARTED', '10'), ...after11.slice(0, 2), ev('RUN_SUCCEEDED', '13', 'SUCCEEDED'), after11[3]!],
          'open',
        ),
        // Interrupted: its gaps were announced; its order still counts (11's start before 10's end).
        segment(2, [ev('RUN_STARTED', '10'), ev('RUN_STARTED', '11'), ev('RUN_SUCCEEDED', '10')], 'interrupted', {
          error: { message: 'interrupted', code: 'EVENTS_INTERRUPTED' },
        }),
        // On i1, closed when it was killed: it owes what came 100 ms or more before the newest it got from each sender (10's events, 11's start).
        segment(3, upTo11, 'closed', { instance: 'i1', pid: 99, endedAt: t + 4500 }),
        // Closed while its instance was up: the same rule, and flagged.
        segment(4, upTo11, 'closed'),
        // Received nothing it could be anchored by.
        segment(5, [], 'closed', { instance: 'i1', pid: 99, after: null }),
      ],
      runs,
      windowEnd: t + 10_000,
      killedPids: new Set([99]),
      kills: [{ instance: 'i1', at: t + 4500 }],
      closeMarginMs: 100,
      subscribers: 2,
    });
    assert.deepEqual(
      report.examples.missing.map((m) => [m.segment, m.runId, m.kind]),
      [['i2 graphql-ws #1', '11', 'RUN_SUCCEEDED']],
    );
    assert.equal(report.missing, 1);
    assert.deepEqual(
      report.examples.lostWithKill.map((m) => [m.segment, m.runId, m.kind, m.killedAfterMs]),
      [
        ['i2 graphql-ws #0', '14', 'RUN_SUCCEEDED', 50],
        ['i2 graphql-ws #0', '15', 'RUN_STARTED', 40],
        ['i2 graphql-ws #1', '14', 'RUN_SUCCEEDED', 50],
        ['i2 graphql-ws #1', '15', 'RUN_STARTED', 40],
      ],
    );
    assert.deepEqual(
      report.examples.duplicates.map((d) => [d.segment, d.runId, d.kind]),
      [['i2 graphql-ws #1', '10', 'RUN_STARTED']],
    );
    // Segment 1's second start of 10 arrives after 11's start; segment 2's end of 10 after 11's start.
    assert.deepEqual(
      report.examples.outOfOrder.map((o) => [o.segment, o.runId, o.kind]),
      [
        ['i2 graphql-ws #1', '10', 'RUN_STARTED'],
        ['i2 graphql-ws #2', '10', 'RUN_SUCCEEDED'],
      ],
    );
    assert.deepEqual(
      report.examples.mismatched.map((m) => [m.segment, m.runId, m.kind, m.status]),
      [['i2 graphql-ws #1', '13', 'RUN_SUCCEEDED', 'FAILED']],
    );
    assert.deepEqual([report.interrupted, report.closedByKill, report.unexpectedEnds, report.unanchored], [1, 2, 1, 1]);
    // 0 and 1 owe every event (11 each); 3 and 4 only 10's events and 11's start.
    assert.equal(report.required, 11 * 2 + 3 * 2);
  });

  test('healthy: two instances run every due time once, none coalesced', async () => {
    await runShort({ scenario: 'healthy', instances: 2, jobs: 20, durationSeconds: 5, leaseSeconds: LEASE });
  });

  test('kill: an instance killed with SIGKILL and restarted leaves no duplicate and no miss; its runs are ABANDONED within 2 × LEASE_SECONDS', async () => {
    const result = await runShort({
      scenario: 'kill',
      instances: 2,
      jobs: 20,
      durationSeconds: 4,
      faultPlan: [{ atSeconds: 2, kind: 'kill' }],
      leaseSeconds: LEASE,
      // On a loaded test machine a restart may make the others late by a period: that is coalescing, still accounted for.
      allowCoalesced: true,
      // Events the killed process had recorded but not yet sent reach no subscriber and nobody is
      // told (a SPEC §6 gap the relay does not cover yet): shown in the table, failed only by `npm run chaos`.
      allowLostWithKill: true,
    });
    assert.equal(result.held.length, 1, 'an instance was killed');
  });

  test('freeze: an instance stopped with SIGSTOP past its lease writes nothing for the runs it held', async () => {
    const result = await runShort({
      scenario: 'freeze',
      instances: 2,
      jobs: 20,
      durationSeconds: 2,
      faultPlan: [{ atSeconds: 1.5, kind: 'freeze' }],
      leaseSeconds: LEASE,
    });
    assert.equal(result.held.length, 1, 'one freeze');
  });

  test('outage: every connection terminated, then PostgreSQL restarted; the instances resume within 10 s without a restart, no duplicate', async () => {
    // A server of its own: the scenario restarts it.
    const server = await startChaosPostgres(path.join(tmp, 'outage-server'));
    servers.push(server);
    const url = await createDatabase(server.url, 'chaos_outage');
    const result = await runShort(
      {
        scenario: 'db-restart',
        label: 'outage (terminate, then db-restart)',
        instances: 2,
        jobs: 20,
        durationSeconds: 7,
        faultPlan: [
          { atSeconds: 2, kind: 'terminate' },
          { atSeconds: 4, kind: 'db-restart' },
        ],
        downSeconds: 2,
        leaseSeconds: LEASE,
      },
      url,
      server,
    );
    assert.deepEqual(
      result.resume.map((r) => r.kind),
      ['terminate', 'db-restart'],
    );
  });

  test('clock-skew: an instance whose clock is 5 minutes ahead neither duplicates nor misses', async (t) => {
    const missing = faketimeMissing();
    if (missing) return t.skip(`${missing}; the clock-skew scenario needs it`);
    await runShort({ scenario: 'clock-skew', instances: 2, jobs: 20, durationSeconds: 6, leaseSeconds: LEASE, clockOffsets: ['+5m'] });
  });
});

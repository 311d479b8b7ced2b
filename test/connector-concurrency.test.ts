// A connector's limit of concurrent calls (SPEC §3b: maxConcurrent) across two schedulers sharing
// one database: never more calls at once than the limit, measured at the called service; the
// runs left waiting stay due, and start in due-time order as calls end, their timeouts from then.
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, beforeEach, describe, it } from 'node:test';
import { connect } from '../src/db/client.ts';
import type { RunRow } from '../src/db/rows.ts';
import type { DomainError } from '../src/errors.ts';
import { ManualClock } from './helpers/clock.ts';
import { createTestDatabase, testDatabase } from './helpers/db.ts';
import { harness, T0 } from './helpers/harness.ts';
import { origin, routes } from './helpers/http-testbed.ts';
import { testInstance } from './helpers/instance.ts';
import { gql, waitFor } from './helpers/process.ts';

const { sql } = await testDatabase();
beforeEach(() => sql`truncate jobs, job_runs, log_entries, connectors`);

/** The called service: how many calls it holds at once, the most it ever held, and who called. */
function slowService() {
  const seen = { inFlight: 0, most: 0, calls: [] as string[], waiting: new Map<string, ServerResponse>() };
  routes.set('/Slow', (req, res) => {
    const jobId = decodeURIComponent(String(req.headers['x-job-id']));
    seen.calls.push(jobId);
    seen.most = Math.max(seen.most, ++seen.inFlight);
    seen.waiting.set(jobId, res);
  });
  /** Answers the call of `jobId` once it has arrived. */
  const answer = async (jobId: string) => {
    const res = await waitFor(
      () => seen.waiting.get(jobId),
      () => `a call of ${jobId} (waiting: ${[...seen.waiting.keys()].join(', ')})`,
    );
    seen.waiting.delete(jobId);
    seen.inFlight--;
    res.writeHead(200).end('done');
  };
  return { seen, answer };
}

describe('maxConcurrent on a controlled clock, two schedulers', () => {
  it('should leave due runs beyond the limit waiting, untouched, and start them in due-time order as calls end', async () => {
    const clock = new ManualClock(T0);
    // Leases longer than the clock's steps, which no renewal accompanies here.
    const a = harness(sql, { clock, instance: 'A', leaseSeconds: 600 });
    const b = harness(sql, { clock, instance: 'B', leaseSeconds: 600 });
    const { seen, answer } = slowService();
    await a.connectors.create({ id: 'OneC', baseUrl: origin, maxConcurrent: 2 });
    // B has no relay from A here: it reads the connectors itself.
    await b.registry.reload();
    const due = (k: number) => new Date(T0 + 1000 + k * 100);
    for (const k of [1, 2, 3, 4, 5])
      await a.jobs.create({ id: `j${k}`, name: 'x', externalCall: 'OneC:Slow', period: '0:1:0', startAt: due(k), timeoutSeconds: 1 });
    const started = new Map<string, Promise<RunRow | null>>();
    const tick = async (h: typeof a) => {
      for (const s of await h.scheduler.tick()) started.set(s.run.jobId, s.done!);
      return [...started.keys()];
    };
    const callsReached = (n: number) =>
      waitFor(
        () => seen.calls.length === n,
        () => `${n} calls to reach the service (${seen.calls.join(', ')})`,
      );

    clock.set(T0 + 2000);
    assert.deepEqual(await tick(a), ['j1', 'j2']);
    assert.deepEqual(await tick(b), ['j1', 'j2'], 'no call free for B');
    await callsReached(2);
    const waiting = await sql<
      { id: string; nextDueAt: Date }[]
    >`select id, next_due_at from jobs where id in ('j3', 'j4', 'j5') order by id`;
    assert.deepEqual(
      waiting.map((j) => [j.id, j.nextDueAt]),
      [3, 4, 5].map((k) => [`j${k}`, due(k)]),
      'still due, untouched',
    );
    assert.deepEqual(
      [...(await sql`select job_id from job_runs order by id`)].map((r) => r['jobId']),
      ['j1', 'j2'],
    );

    // No call free: a manual run is refused, and changes nothing.
    await assert.rejects(b.jobs.runNow('j5'), (error: DomainError) => error.code === 'CONFLICT' && /maxConcurrent/.test(error.message));

    // Each end frees one call, taken by the earliest due run still waiting, whichever scheduler looks.
    clock.set(T0 + 2400);
    await answer('j1');
    await started.get('j1');
    assert.deepEqual(await tick(b), ['j1', 'j2', 'j3']);
    clock.set(T0 + 2800);
    await answer('j2');
    await started.get('j2');
    assert.deepEqual(await tick(a), ['j1', 'j2', 'j3', 'j4']);
    clock.set(T0 + 3200);
    await answer('j3');
    await started.get('j3');
    assert.deepEqual(await tick(b), ['j1', 'j2', 'j3', 'j4', 'j5']);
    await callsReached(5);
    clock.set(T0 + 3600);
    await answer('j4');
    await answer('j5');
    await Promise.all(started.values());

    assert.equal(seen.most, 2);
    const runs = await sql<RunRow[]>`select * from job_runs order by started_at, id`;
    assert.deepEqual(
      runs.map((r) => [r.jobId, r.instance, r.status, r.missed, r.scheduledAt, r.startedAt]),
      [
        ['j1', 'A', 'SUCCEEDED', 0, due(1), new Date(T0 + 2000)],
        ['j2', 'A', 'SUCCEEDED', 0, due(2), new Date(T0 + 2000)],
        // Their lateness shows the wait; their 1 s timeouts ran from their calls' start, not their due time.
        ['j3', 'B', 'SUCCEEDED', 0, due(3), new Date(T0 + 2400)],
        ['j4', 'A', 'SUCCEEDED', 0, due(4), new Date(T0 + 2800)],
        ['j5', 'B', 'SUCCEEDED', 0, due(5), new Date(T0 + 3200)],
      ],
    );
  });
});

describe('jobs waiting for a connector beside others', () => {
  it("should claim other connectors' due jobs however many jobs wait for a full connector, and later ones first", async () => {
    // Batches of two: the three jobs waiting for OneC, due first, would fill every batch.
    const h = harness(sql, { batchSize: 2, leaseSeconds: 600 });
    const { answer } = slowService();
    h.connector.define('ok', async () => {});
    await h.connectors.create({ id: 'OneC', baseUrl: origin, maxConcurrent: 1 });
    for (const k of [1, 2, 3, 4])
      await h.jobs.create({ id: `slow${k}`, name: 'x', externalCall: 'OneC:Slow', period: '0:1:0', startAt: new Date(T0 + k * 100) });
    await h.jobs.create({ id: 'other', name: 'x', externalCall: 'Test:ok', period: '0:1:0', startAt: new Date(T0 + 900) });
    h.clock.set(T0 + 1000);
    const started = await h.scheduler.tick();
    assert.deepEqual(
      started.map((s) => s.run.jobId),
      ['slow1', 'other'],
    );
    await waitFor(() => h.connector.calls.length === 1, 'the other connector to be called');
    await answer('slow1');
    await Promise.all(started.map((s) => s.done));
    const next = await h.scheduler.tick();
    assert.deepEqual(
      next.map((s) => s.run.jobId),
      ['slow2'],
    );
    await answer('slow2');
    await next[0]!.done;
  });
});

describe('maxConcurrent on two instances', () => {
  it('should never make more than maxConcurrent calls at once, and start waiting runs as calls end', async () => {
    const url = await createTestDatabase();
    const CALL_MS = 400;
    // Measured at the service: when each call arrived and when each was answered.
    const seen = { inFlight: 0, most: 0, arrivals: [] as number[], ends: [] as number[] };
    routes.set('/Slow', (_req, res) => {
      seen.arrivals.push(Date.now());
      seen.most = Math.max(seen.most, ++seen.inFlight);
      setTimeout(() => {
        seen.inFlight--;
        seen.ends.push(Date.now());
        res.writeHead(200).end('done');
      }, CALL_MS);
    });
    const settings = (id: string) => ({ DATABASE_URL: url, INSTANCE_ID: id, HTTP_CONNECTOR_ALLOW_HOSTS: '127.0.0.1' });
    const a = await testInstance(settings('A'));
    const b = await testInstance(settings('B'));
    await gql(a.port, `mutation { createConnector(input: { id: "OneC", baseUrl: "${origin}", maxConcurrent: 2 }) { id } }`);
    await waitFor(
      async () =>
        (
          await gql<{ connectors: { id: string; maxConcurrent: number | null }[] }>(b.port, '{ connectors { id maxConcurrent } }')
        ).connectors.some((c) => c.maxConcurrent === 2),
      'B to know the limit',
    );
    // Eight jobs due at one instant; a call takes CALL_MS and a run's timeout is 1 s: the last pair
    // waits three calls long, so only timeouts that start with the call let it succeed.
    const dueAt = new Date(Date.now() + 3000);
    const JOBS = 8;
    for (let k = 1; k <= JOBS; k++)
      await gql((k % 2 ? a : b).port, 'mutation($input: CreateJobInput!) { createJob(input: $input) { id } }', {
        input: { id: `j${k}`, name: 'x', externalCall: 'OneC:Slow', period: '0:10:0', startAt: dueAt.toISOString(), timeoutSeconds: 1 },
      });

    const { sql: db, close } = connect(url, { max: 1 });
    after(close);
    const runs = await waitFor(
      async () => {
        const rows = await db<RunRow[]>`select * from job_runs where status <> 'RUNNING' order by started_at, id`;
        return rows.length === JOBS ? [...rows] : null;
      },
      'every job to have run once',
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    assert.equal(seen.most, 2, 'at most 2 calls at once, measured at the service, and the limit used');
    assert.deepEqual(
      runs.map((r) => r.status),
      Array(JOBS).fill('SUCCEEDED'),
    );
    for (const run of runs) {
      assert.equal(run.scheduledAt.getTime(), dueAt.getTime());
      assert.ok(run.startedAt!.getTime() >= dueAt.getTime());
    }
    // A waiting call starts once a call has ended, and soon after (not at some later round): the
    // third call takes the slot the first end freed, the fourth the second's, and so on.
    for (let i = 2; i < JOBS; i++) {
      const wait = seen.arrivals[i]! - seen.ends[i - 2]!;
      assert.ok(wait >= 0 && wait < 2000, `call ${i + 1} arrived ${wait} ms after the end that freed its slot`);
    }
    const lateness = runs.map((r) => r.startedAt!.getTime() - dueAt.getTime());
    assert.ok(lateness[JOBS - 1]! >= 3 * CALL_MS - 100, `the last runs' lateness shows the wait: ${lateness.join(', ')} ms`);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import type { RunRow } from '../src/db/rows.ts';
import { createMetrics } from '../src/metrics.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, T0 } from './helpers/harness.ts';
import { operationsDir, testInstance } from './helpers/instance.ts';
import { gql, waitFor } from './helpers/process.ts';

const { sql, url } = await testDatabase();
const ops = operationsDir();

const run = (status: RunRow['status']): RunRow =>
  ({
    id: '1',
    jobId: 'j',
    trigger: 'SCHEDULE',
    scheduledAt: new Date(T0),
    startedAt: new Date(T0 + 20),
    finishedAt: new Date(T0 + 120),
    status,
  }) as RunRow;

describe('metrics', () => {
  it('should count this instance’s runs by status, lateness and duration, but not runs relayed from other instances', async () => {
    const h = harness(sql);
    const metrics = createMetrics(h.bus, 'm1');
    h.bus.publish('run:started', { at: new Date(T0), run: run('RUNNING') });
    h.bus.publish('run:finished', { at: new Date(T0), run: run('FAILED') });
    h.bus.publish('run:finished', { at: new Date(T0), run: run('ABANDONED') });
    h.bus.deliver({ topic: 'run:finished', payload: { at: new Date(T0), run: run('SUCCEEDED') } });
    const text = await metrics.registry.metrics();
    assert.match(text, /server_jobs_runs_total\{status="FAILED",instance="m1"\} 1/);
    assert.match(text, /server_jobs_runs_total\{status="ABANDONED",instance="m1"\} 1/);
    assert.doesNotMatch(text, /status="SUCCEEDED"/);
    assert.match(text, /server_jobs_abandoned_runs_total\{instance="m1"\} 1/);
    assert.match(text, /server_jobs_run_lateness_seconds_bucket\{le="0.025",instance="m1"\} 1/);
    assert.match(text, /server_jobs_run_duration_seconds_count\{instance="m1"\} 2/);
    metrics.stop();
  });

  it('should serve /metrics with the claims, runs and open subscriptions of the instance, counted by its own wiring', async () => {
    // A whole instance, as main.ts starts one: its scheduler, event bus and metrics are wired by
    // instance.ts, and the test only watches from outside (the API, /metrics and the rows).
    const instance = await testInstance({ DATABASE_URL: url, INSTANCE_ID: 'm2', SERVER_OPERATIONS_DIR: ops });
    const metricsText = async () => {
      const response = await fetch(`http://127.0.0.1:${instance.port}/metrics`);
      assert.equal(response.status, 200);
      return response.text();
    };
    const value = (text: string, series: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    assert.equal(value(await metricsText(), 'server_jobs_claims_total{instance="m2"}'), 0, 'nothing claimed yet');

    // An SSE subscription, open until the end of the test.
    const subscription = new AbortController();
    const sse = await fetch(`http://127.0.0.1:${instance.port}/graphql`, {
      method: 'POST',
      headers: { accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'subscription { jobEvents { kind } }' }),
      signal: subscription.signal,
    });
    assert.equal(sse.status, 200);

    try {
      await gql(
        instance.port,
        'mutation { createJob(input: {id: "m", name: "m", externalCall: "ServerOperationConnector:Noop", period: "0:0:1", timeoutSeconds: 60}) { id } }',
      );
      const count = async (where: string) =>
        (
          await sql.unsafe<{ n: number }[]>(`select count(*)::int as n from job_runs where job_id = 'm' and instance = 'm2' and ${where}`)
        )[0]!.n;
      await waitFor(async () => (await count("status = 'SUCCEEDED'")) >= 2, 'two runs of the job', { timeoutMs: 15_000, intervalMs: 100 });
      await gql(instance.port, 'mutation { pauseJob(id: "m") { id } runJobNow(id: "m") { id } }');
      await waitFor(async () => (await count("status = 'RUNNING'")) === 0, 'the runs to end', { intervalMs: 100 });

      // What /metrics says is what the rows say: every due time claimed and every run ended here.
      // (A loaded machine may skip a due time while the previous run is still going.)
      const claimed = await count("trigger = 'SCHEDULE'");
      const succeeded = await count("status = 'SUCCEEDED'");
      const skipped = await count("status = 'SKIPPED'");
      assert.ok(
        claimed >= 2 && succeeded + skipped === claimed + 1,
        `${claimed} claimed, ${succeeded} succeeded (one run now), ${skipped} skipped`,
      );
      const expected = {
        'server_jobs_claims_total{instance="m2"}': claimed,
        'server_jobs_runs_total{status="SUCCEEDED",instance="m2"}': succeeded,
        'server_jobs_runs_total{status="SKIPPED",instance="m2"}': skipped || undefined,
        'server_jobs_run_duration_seconds_count{instance="m2"}': succeeded,
        'server_jobs_run_lateness_seconds_count{instance="m2"}': claimed - skipped,
        'server_jobs_subscribers{instance="m2"}': 1,
      };
      let text = '';
      const seen = () => Object.fromEntries(Object.keys(expected).map((series) => [series, value(text, series)]));
      await waitFor(
        async () => {
          text = await metricsText();
          return isDeepStrictEqual(seen(), expected);
        },
        () => `/metrics to count what the rows say: ${JSON.stringify(seen())}, expected ${JSON.stringify(expected)}`,
        { timeoutMs: 5_000, intervalMs: 50 },
      );
      assert.doesNotMatch(text, /status="FAILED"/);
    } finally {
      subscription.abort();
    }
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RunRow } from '../src/db/rows.ts';
import { createMetrics } from '../src/metrics.ts';
import { buildApp } from '../src/http/app.ts';
import { testDatabase } from './helpers/db.ts';
import { harness, silentLog, T0, tickAndSettle } from './helpers/harness.ts';

const { sql } = await testDatabase();

const run = (status: RunRow['status']): RunRow =>
  ({ id: '1', jobId: 'j', trigger: 'SCHEDULE', scheduledAt: new Date(T0), startedAt: new Date(T0 + 20), finishedAt: new Date(T0 + 120), status }) as RunRow;

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

  it('should serve /metrics with claims and the number of open subscriptions', async () => {
    const h = harness(sql);
    const metrics = createMetrics(h.bus, 'm2');
    h.connector.define('ok', async () => {});
    await h.jobs.create({ id: 'm', name: 'm', externalCall: 'Test:ok', period: '0:0:1' });
    h.clock.set(T0 + 1000);
    const claimed = await tickAndSettle(h);
    metrics.claims.inc(claimed.length);
    const subscription = h.bus.subscribe(() => undefined);
    const served = buildApp({
      context: { sql, jobs: h.jobs, connectors: h.connectors, registry: h.registry, bus: h.bus },
      log: silentLog,
      metrics: () => metrics.registry,
      health: async () => ({ ok: true, body: {} }),
    });
    const port = await served.listen(0, '127.0.0.1');
    try {
      const response = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(response.status, 200);
      const text = await response.text();
      assert.match(text, /server_jobs_claims_total\{instance="m2"\} 1/);
      assert.match(text, /server_jobs_subscribers\{instance="m2"\} 1/);
      assert.match(text, /server_jobs_runs_total\{status="SUCCEEDED",instance="m2"\} 1/);
    } finally {
      await subscription.return?.();
      await served.close();
      metrics.stop();
    }
  });
});

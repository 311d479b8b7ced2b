// Server operations run on worker threads (SPEC §8): one that blocks its thread, ignores its abort
// or ends its worker is ended on time and its worker replaced, while the scheduler, the API and
// the other operations go on.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ServerOperationsConnector } from '../src/connectors/server-operations.ts';
import type { CallContext } from '../src/connectors/types.ts';
import { testDatabase } from './helpers/db.ts';
import { silentLog, T0 } from './helpers/harness.ts';
import { gql, runService, stopAll, waitFor } from './helpers/process.ts';

const { sql, url: databaseUrl } = await testDatabase();
const serviceDb = await testDatabase();

let dir: string;
let connector: ServerOperationsConnector;

const OPERATIONS = `export default {
  // Tells the test it started (without waiting for the answer), then never yields its thread again.
  async Spin(ctx) { void ctx.log('INFO', 'spinning'); for (;;) {} },
  async Noop() {},
  // Awaits forever and never looks at its AbortSignal.
  async Deaf(ctx) { await ctx.log('INFO', 'deaf'); await new Promise(() => {}); },
  async Exit() { process.exit(7); },
  async Quick(ctx) { await ctx.log('INFO', 'quick ran'); return ctx.runId; },
  // Stays until its run is aborted, then ends as asked.
  async Polite(ctx) {
    await ctx.log('INFO', 'polite');
    await new Promise((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', resolve)));
    await ctx.log('INFO', 'stopped politely');
  },
};\n`;

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-isolation-'));
  await fs.chmod(dir, 0o755);
  await fs.writeFile(path.join(dir, 'ops.mjs'), OPERATIONS);
  connector = new ServerOperationsConnector({ dir, builtins: {}, databaseUrl, instance: 'isolation-test', workers: 2, log: silentLog });
  await connector.start();
});
after(async () => {
  await connector.stop();
  await stopAll();
  await fs.rm(dir, { recursive: true, force: true });
});

/** A call context whose log entries are collected; `logged` resolves on the first one. */
function context(runId: string) {
  const abort = new AbortController();
  const messages: string[] = [];
  let first: () => void = () => {};
  const logged = new Promise<void>((resolve) => (first = resolve));
  const ctx: CallContext = {
    signal: abort.signal,
    log: async (_level, message) => {
      messages.push(message);
      first();
    },
    jobId: 'isolation',
    runId,
    scheduledAt: new Date(T0),
    sql,
  };
  return { ctx, abort, messages, logged };
}

describe('a server operation on a worker thread', () => {
  test('should be replaced when it blocks its thread, while calls queued behind it run elsewhere exactly once', async () => {
    const spin = context('spin');
    const spinning = connector.call('Spin', spin.ctx);
    const spinEnd = spinning.then(
      () => 'resolved',
      (error: Error) => error.message,
    ) as Promise<string>;
    await spin.logged;
    // Some of these land on the blocked worker before it is seen silent; each must still run, once.
    const quick = Array.from({ length: 20 }, (_, i) => context(`quick-${i}`));
    const values = await Promise.all(quick.map((q) => connector.call('Quick', q.ctx)));
    assert.deepEqual(
      values,
      quick.map((q) => q.ctx.runId),
      'every queued call ran and answered',
    );
    assert.ok(
      quick.every((q) => q.messages.length === 1),
      'no call ran twice',
    );

    spin.abort.abort({ status: 'ABANDONED', error: 'test' });
    assert.match(await spinEnd, /Server operation "Spin" did not stop when its run was aborted; its worker thread was replaced/);
    // The pool is whole again.
    const after = context('after-spin');
    assert.equal(await connector.call('Quick', after.ctx), 'after-spin');
  });

  test('should have its worker replaced when it ignores its abort', async () => {
    const deaf = context('deaf');
    const ending = connector.call('Deaf', deaf.ctx).then(String, (error: Error) => error.message);
    await deaf.logged;
    deaf.abort.abort({ status: 'CANCELLED', error: 'test' });
    assert.match(await ending, /did not stop when its run was aborted; its worker thread was replaced/);
  });

  test('should see its abort and end by itself when it listens', async () => {
    const polite = context('polite');
    const ending = connector.call('Polite', polite.ctx);
    await polite.logged;
    polite.abort.abort({ status: 'CANCELLED', error: 'test' });
    await ending;
    assert.deepEqual(polite.messages, ['polite', 'stopped politely']);
  });

  test('should keep its worker when the main thread, not the worker, was too busy to hear its beats', async () => {
    const polite = context('polite-starved');
    const ending = connector.call('Polite', polite.ctx);
    await polite.logged;
    // The worker beats on meanwhile; its beats wait unread until this thread is free again.
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      // busy: an overloaded machine, a long pause of the main thread
    }
    // Aborted at once, before this thread reads a message: taken for blocked, the worker was
    // replaced and the call failed ("… blocked it") instead of stopping as asked.
    polite.abort.abort({ status: 'CANCELLED', error: 'test' });
    await ending;
    assert.deepEqual(polite.messages, ['polite', 'stopped politely']);
  });

  test('should fail clearly when it ends its worker, and the next call should find a worker', async () => {
    await assert.rejects(connector.call('Exit', context('exit').ctx), {
      message: 'Server operation "Exit" ended its worker thread (worker exited with code: 7)',
    });
    assert.equal(await connector.call('Quick', context('after-exit').ctx), 'after-exit');
  });
});

interface Run {
  status: string;
  missed: number;
  trigger: string;
  error: string | null;
}

test('one operation spinning does not hold up 50 jobs at one second, the API or /health', async (t) => {
  // Compiled, as `npm start` runs it: its workers, and the one replacing the blocked worker, load
  // dist/'s operation-worker.js with no TypeScript loader in the process.
  const { service, port } = await runService(
    t,
    { DATABASE_URL: serviceDb.url, SERVER_OPERATIONS_DIR: dir, SERVER_OPERATIONS_WORKERS: '2' },
    { compiled: true },
  );
  const createJob = `mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }`;
  for (let i = 0; i < 50; i++) {
    await gql(port, createJob, {
      input: { id: `quick-${i}`, name: `Быстрая ${i}`, externalCall: 'ServerOperationConnector:Noop', period: '0:0:1' },
    });
  }
  await gql(port, createJob, {
    input: { id: 'spin', name: 'Spins', externalCall: 'ServerOperationConnector:Spin', period: '1:0:0', timeoutSeconds: 2 },
  });

  // /health is polled all along; every answer must be 200.
  const health: number[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5000) }).catch(() => null);
      health.push(response?.status ?? 0);
      await response?.body?.cancel();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();

  const succeeded = async (min: number) =>
    (await serviceDb.sql<{ n: number }[]>`select count(*)::int as n from job_runs where job_id like 'quick-%' and status = 'SUCCEEDED'`)[0]!
      .n >= min;
  await waitFor(() => succeeded(50), 'the quick jobs to run', { timeoutMs: 30_000, intervalMs: 100 });

  await gql(port, `mutation { runJobNow(id: "spin") { id } }`);
  const spun = await waitFor(
    async () => (await serviceDb.sql<Run[]>`select status, error from job_runs where job_id = 'spin' and status <> 'RUNNING'`)[0],
    'the spinning run to end',
    { timeoutMs: 30_000, intervalMs: 100 },
  );
  assert.equal(spun.status, 'TIMED_OUT', `the spinning run ended ${spun.status}: ${spun.error}`);
  await service.waitForLog((r) => r.msg === 'replacing a server operations worker', 10_000, 'that it replaced the blocked worker');
  // The quick jobs kept running while it spun, and go on after.
  const [counted] = await serviceDb.sql<
    { n: number }[]
  >`select count(*)::int as n from job_runs where job_id like 'quick-%' and status = 'SUCCEEDED'`;
  await waitFor(() => succeeded(counted!.n + 100), 'the quick jobs to go on after the spin', { timeoutMs: 30_000, intervalMs: 100 });
  polling = false;
  await poller;

  const others = await serviceDb.sql<
    Run[]
  >`select status, missed, trigger, error from job_runs where job_id like 'quick-%' and status <> 'RUNNING'`;
  const bad = others.filter((r) => r.status !== 'SUCCEEDED' || r.missed !== 0);
  assert.deepEqual(bad, [], 'no other run timed out, was skipped or was coalesced');
  assert.ok(health.length > 10, `/health was polled (${health.length} times)`);
  assert.deepEqual(
    health.filter((status) => status !== 200),
    [],
    '/health answered 200 every time',
  );
});

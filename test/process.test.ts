// The service as `npm start` runs it: a real process, real time, signals, restarts and crashes
// (SPEC §3 leases and graceful shutdown, §7 running it). Waits are on log lines, HTTP answers and
// database state, each bounded; every process started here is stopped in the hooks.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { testDatabase } from './helpers/db.ts';
import {
  gql,
  gqlResult,
  isAlive,
  isListening,
  postmasterPid,
  runService,
  startServiceProcess,
  stopAll,
  waitFor,
} from './helpers/process.ts';

// One database per scenario, so that one scenario's jobs never run in another's service.
const restartDb = await testDatabase();
const shutdownDb = await testDatabase();
const healthDb = await testDatabase();

let tmp: string;
let operationsDir: string;

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-process-'));
  await fs.chmod(tmp, 0o755); // as root, the embedded server runs as user postgres and must reach its cluster
  operationsDir = path.join(tmp, 'operations');
  await fs.mkdir(operationsDir);
  await fs.writeFile(
    path.join(operationsDir, 'test-operations.mjs'),
    `export default {
      async Noop(ctx) { await ctx.log('INFO', 'noop ran'); },
      // Ignores its AbortSignal: the service must end the run without the operation's help.
      Hang() { return new Promise(() => {}); },
    };\n`,
  );
});
after(async () => {
  await stopAll();
  await fs.rm(tmp, { recursive: true, force: true });
});

interface Run {
  id: string;
  status: string;
  scheduledAt: string;
  startedAt: string | null;
  missed: number;
  trigger: string;
  error: string | null;
  instance: string | null;
}
interface LogEntry {
  id: string;
  level: string;
  message: string;
  runId: string | null;
}

const CREATE_JOB = `mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }`;
const RUN_NOW = `mutation ($id: ID!) { runJobNow(id: $id) { id status trigger instance } }`;
const RUNS = `query ($jobId: ID!) { runs(jobId: $jobId, first: 100) {
  edges { node { id status scheduledAt startedAt missed trigger error instance } } } }`;
const LOG = `query ($jobId: ID!) { logEntries(jobId: $jobId, first: 100) { edges { node { id level message runId } } } }`;

/** The runs of a job, oldest due time first. */
async function runsOf(port: number, jobId: string): Promise<Run[]> {
  const data = await gql<{ runs: { edges: { node: Run }[] } }>(port, RUNS, { jobId });
  return data.runs.edges.map((e) => e.node).reverse();
}
async function logOf(port: number, jobId: string): Promise<LogEntry[]> {
  const data = await gql<{ logEntries: { edges: { node: LogEntry }[] } }>(port, LOG, { jobId });
  return data.logEntries.edges.map((e) => e.node);
}
const ms = (iso: string) => Date.parse(iso);

// The scenarios are independent (a database or data directory each) and mostly wait on time and
// process starts, so they run side by side.
describe('the service as a process', { concurrency: true }, () => {
  test('keeps jobs, runs and log entries across a restart and coalesces the due times it was down for into one run', async (t) => {
    // A generous grace period and timeout: on a loaded machine a run may take longer than its 1 s period.
    const env = { DATABASE_URL: restartDb.url, SERVER_OPERATIONS_DIR: operationsDir, LEASE_SECONDS: '2', SHUTDOWN_GRACE_SECONDS: '5' };
    const first = await runService(t, { ...env, INSTANCE_ID: 'restart-first' });
    await gql(first.port, CREATE_JOB, {
      input: { id: 'tick', name: 'Every second', externalCall: 'ServerOperationConnector:Noop', period: '0:0:1', timeoutSeconds: 30 },
    });
    await waitFor(
      async () => (await runsOf(first.port, 'tick')).filter((r) => r.status === 'SUCCEEDED').length >= 2,
      'two SUCCEEDED runs of the job',
      {
        intervalMs: 100,
      },
    );

    first.service.signal('SIGTERM');
    assert.deepEqual(await first.service.waitForExit(10_000), { code: 0, signal: null }, first.service.output);
    const stoppedAt = Date.now();
    assert.ok(
      first.service.records.some((r) => r.msg === 'stopped'),
      'it logs that it stopped',
    );

    // What the first process left, read straight from the database while no service runs.
    const { sql } = restartDb;
    const leftRuns = await sql<{ id: string; status: string; scheduledAt: Date }[]>`
      select id::text, status, scheduled_at from job_runs where job_id = 'tick' order by scheduled_at`;
    const leftLog = await sql<{ id: string }[]>`select id::text from log_entries where job_id = 'tick'`;
    const [job] = await sql<{ nextDueAt: Date }[]>`select next_due_at from jobs where id = 'tick'`;
    assert.ok(leftRuns.length >= 2 && leftLog.length >= 2, 'the runs wrote log entries');
    assert.ok(
      leftRuns.every((r) => r.status !== 'RUNNING'),
      'no run is left in progress after a graceful stop',
    );

    // Down for at least 3.5 s by the database's clock, and for at least two due times: a deadline, checked by polling.
    const downUntil = Math.max(stoppedAt + 3_500, job!.nextDueAt.getTime() + 2_000);
    await waitFor(
      async () => {
        const [row] = await sql<{ now: Date }[]>`select clock_timestamp() as now`;
        return row!.now.getTime() >= downUntil;
      },
      'the downtime to pass',
      { intervalMs: 100 },
    );

    const second = await runService(t, { ...env, INSTANCE_ID: 'restart-second' });
    const jobs = await gql<{ jobs: { id: string; period: string; enabled: boolean }[] }>(second.port, `{ jobs { id period enabled } }`);
    assert.deepEqual(jobs.jobs, [{ id: 'tick', period: '0:00:01', enabled: true }]);
    const kept = await runsOf(second.port, 'tick');
    for (const left of leftRuns) {
      const run = kept.find((r) => r.id === left.id);
      assert.ok(run, `run ${left.id} of the first process is still listed`);
      assert.equal(run.status, left.status);
      assert.equal(run.instance, 'restart-first');
    }
    const keptLog = await logOf(second.port, 'tick');
    for (const { id } of leftLog)
      assert.ok(
        keptLog.some((e) => e.id === id),
        `log entry ${id} is still listed`,
      );

    // The first run after the restart stands for every due time of the downtime; the job then continues on its grid.
    const lastBefore = leftRuns.at(-1)!.scheduledAt.getTime();
    // Two ended runs after the restart. Under load the coalesced run may still be going at the
    // next due time, which is then a SKIPPED run: accounted for all the same (§3, overlap).
    const ended = await waitFor(
      async () => {
        const runs = (await runsOf(second.port, 'tick')).filter((r) => ms(r.scheduledAt) > lastBefore);
        return runs.length >= 2 && runs.slice(0, 2).every((r) => r.status !== 'RUNNING') ? runs : undefined;
      },
      'two ended runs after the restart',
      { intervalMs: 100 },
    );
    const [coalesced, next] = ended;
    assert.deepEqual(
      { trigger: coalesced!.trigger, status: coalesced!.status, instance: coalesced!.instance },
      { trigger: 'SCHEDULE', status: 'SUCCEEDED', instance: 'restart-second' },
    );
    assert.ok(coalesced!.missed >= 2, `the first run after 3.5 s down coalesces at least 2 due times (missed: ${coalesced!.missed})`);
    assert.ok(ms(coalesced!.startedAt!) >= ms(coalesced!.scheduledAt), 'it did not start before its due time');
    assert.equal(next!.missed, 0, 'the run after it is on time');
    assert.equal(ms(next!.scheduledAt) - ms(coalesced!.scheduledAt), 1_000, 'the job continues on its grid');
    assert.match(next!.status, /^(SUCCEEDED|SKIPPED)$/);

    const warning = (await logOf(second.port, 'tick')).find((e) => e.runId === coalesced!.id && e.level === 'WARNING');
    assert.ok(warning, 'the coalesced run has a WARNING entry');
    assert.match(warning.message, new RegExp(`missed ${coalesced!.missed} due times; coalesced`));

    second.service.signal('SIGTERM');
    assert.deepEqual(await second.service.waitForExit(10_000), { code: 0, signal: null }, second.service.output);

    // Exactly once per due time: no due time twice, and the gaps between runs are their missed counts.
    const all = await sql<{ scheduledAt: Date; missed: number; status: string }[]>`
      select scheduled_at, missed, status from job_runs where job_id = 'tick' and trigger = 'SCHEDULE' order by scheduled_at`;
    const dueTimes = all.map((r) => r.scheduledAt.getTime());
    assert.equal(new Set(dueTimes).size, dueTimes.length, 'no two runs share a due time');
    for (let i = 1; i < all.length; i++) {
      assert.equal(dueTimes[i]! - dueTimes[i - 1]!, (all[i]!.missed + 1) * 1_000, `run ${i}: every grid point is accounted for once`);
    }
    assert.ok(
      all.every((r) => r.status === 'SUCCEEDED' || r.status === 'SKIPPED'),
      `every due time ran or was skipped: ${all.map((r) => r.status).join(', ')}`,
    );
  });

  test('on SIGTERM, waits the grace period, then records a run still in flight ABANDONED "instance shut down" and exits 0', async (t) => {
    const { service, port } = await runService(t, {
      DATABASE_URL: shutdownDb.url,
      SERVER_OPERATIONS_DIR: operationsDir,
      INSTANCE_ID: 'shutdown',
      LEASE_SECONDS: '2',
      SHUTDOWN_GRACE_SECONDS: '1',
    });
    await gql(port, CREATE_JOB, { input: { id: 'hang', name: 'Hangs', externalCall: 'ServerOperationConnector:Hang', period: '1:0:0' } });
    const { runJobNow: run } = await gql<{ runJobNow: { id: string; status: string; trigger: string; instance: string } }>(port, RUN_NOW, {
      id: 'hang',
    });
    assert.deepEqual([run.status, run.trigger, run.instance], ['RUNNING', 'MANUAL', 'shutdown']);

    const signalledAt = performance.now();
    service.signal('SIGTERM');
    assert.deepEqual(await service.waitForExit(10_000), { code: 0, signal: null }, service.output);
    const tookMs = performance.now() - signalledAt;
    assert.ok(tookMs >= 1_000, `it gave the run its grace period of 1 s (exited after ${Math.round(tookMs)} ms)`);
    assert.ok(
      service.records.some((r) => r.msg === 'shutting down' && r['graceSeconds'] === 1),
      service.output,
    );

    const { sql } = shutdownDb;
    const [row] = await sql<{ status: string; error: string; finishedAt: Date | null }[]>`
      select status, error, finished_at from job_runs where id = ${run.id}`;
    assert.equal(row!.status, 'ABANDONED');
    assert.equal(row!.error, 'instance shut down');
    assert.ok(row!.finishedAt, 'the end is recorded');
    const entries = await sql<{ level: string; message: string }[]>`select level, message from log_entries where run_id = ${run.id}`;
    assert.ok(
      entries.some((e) => e.level === 'ERROR' && e.message.includes('instance shut down')),
      `an ERROR entry tells why: ${JSON.stringify(entries)}`,
    );
  });

  test('with an embedded PostgreSQL: refuses a second start on the directory, recovers after a crash, and stops its database on SIGTERM', async (t) => {
    const dataDir = path.join(tmp, 'embedded');
    const env = { DATA_DIR: dataDir, SERVER_OPERATIONS_DIR: operationsDir, LEASE_SECONDS: '2', SHUTDOWN_GRACE_SECONDS: '1' };
    const first = await runService(t, { ...env, INSTANCE_ID: 'embedded-first' });
    assert.ok(first.service.records.some((r) => isListening(r) && r['database'] === 'embedded'));

    const intruder = startServiceProcess(t, { ...env, INSTANCE_ID: 'embedded-intruder' });
    assert.equal((await intruder.waitForExit(60_000)).code, 1, intruder.output);
    assert.match(intruder.stdout + intruder.stderr, new RegExp(`data directory .*embedded is in use by process ${first.service.pid}`));
    assert.ok(await postmasterPid(dataDir), 'the refused start left the running database alone');

    await gql(first.port, CREATE_JOB, {
      input: { id: 'hang', name: 'Hangs', externalCall: 'ServerOperationConnector:Hang', period: '1:0:0' },
    });
    const { runJobNow: run } = await gql<{ runJobNow: { id: string; status: string } }>(first.port, RUN_NOW, { id: 'hang' });
    assert.equal(run.status, 'RUNNING');

    // A crash: the service dies at once; its database, in a process group of its own, lives on.
    const orphan = await postmasterPid(dataDir);
    assert.ok(orphan, 'the embedded PostgreSQL runs');
    first.service.signal('SIGKILL');
    assert.equal((await first.service.waitForExit(10_000)).signal, 'SIGKILL');
    assert.ok(await isAlive(orphan), 'the killed service left its PostgreSQL running');

    const again = await runService(t, { ...env, INSTANCE_ID: 'embedded-again' });
    assert.ok(!(await isAlive(orphan)), 'the restart stopped the orphaned PostgreSQL');
    const restarted = await postmasterPid(dataDir);
    assert.ok(restarted && restarted !== orphan, 'and runs its own');
    const jobs = await gql<{ jobs: { id: string }[] }>(again.port, `{ jobs { id } }`);
    assert.deepEqual(jobs.jobs, [{ id: 'hang' }], 'the data is kept');
    const [abandoned] = await runsOf(again.port, 'hang');
    assert.equal(abandoned!.id, run.id);
    assert.equal(abandoned!.status, 'ABANDONED', 'the run of the killed process is abandoned at start');
    assert.match(abandoned!.error ?? '', /crashed/);
    assert.equal(abandoned!.instance, 'embedded-first');

    again.service.signal('SIGTERM');
    assert.deepEqual(await again.service.waitForExit(15_000), { code: 0, signal: null }, again.service.output);
    assert.equal(await postmasterPid(dataDir), undefined, 'no PostgreSQL of the data directory remains');
    assert.ok(!(await isAlive(restarted)), 'its PostgreSQL has stopped');
    await assert.rejects(fs.access(path.join(dataDir, 'service.pid')), 'the directory lock is released');
  });

  test('refuses a bad configuration with exit code 1, naming every bad variable', async (t) => {
    // A database and data directory of their own, in case a start went through by mistake.
    const base = { DATABASE_URL: healthDb.url, DATA_DIR: path.join(tmp, 'bad-config'), SERVER_OPERATIONS_DIR: operationsDir };
    const badValues = startServiceProcess(t, { ...base, PORT: 'abc', LEASE_SECONDS: '0' });
    // A token line that cannot be read: refused, naming the entry, never quoting it.
    const auth = startServiceProcess(t, { ...base, AUTH_TOKENS: 'canary-pasted-token-without-name-or-role' });
    const [badExit, authExit] = await Promise.all([badValues.waitForExit(60_000), auth.waitForExit(60_000)]);

    assert.equal(badExit.code, 1, badValues.output);
    const badText = badValues.stdout + badValues.stderr;
    assert.match(badText, /PORT.*abc/);
    assert.match(badText, /LEASE_SECONDS/);
    assert.ok(!badValues.records.some(isListening));

    assert.equal(authExit.code, 1, auth.output);
    assert.match(auth.stdout + auth.stderr, /AUTH_TOKENS: entry 1: expected name:role:token/);
    assert.ok(!(auth.stdout + auth.stderr).includes('canary-pasted'), 'the token is not echoed');
    assert.ok(!auth.records.some(isListening), 'it never runs more open than configured');
  });

  test('answers /health with its instance and database state, and /health/live', async (t) => {
    const { service, port } = await runService(t, {
      DATABASE_URL: healthDb.url,
      SERVER_OPERATIONS_DIR: operationsDir,
      INSTANCE_ID: 'healthy-one',
    });
    // Ready is a record with fields programs read, and a sentence people read.
    const listening = service.records.find(isListening)!;
    assert.deepEqual(
      [listening['port'], listening['host'], listening['url'], listening['database']],
      [port, '127.0.0.1', `http://localhost:${port}/graphql`, 'external'],
    );
    assert.equal(
      listening.msg,
      `Server Jobs is running: the dashboard at http://localhost:${port}/, GraphiQL at http://localhost:${port}/graphql`,
    );
    const health = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(health.status, 200);
    assert.match(health.headers.get('content-type') ?? '', /application\/json/);
    const body = (await health.json()) as Record<string, unknown>;
    assert.equal(body['status'], 'ok');
    assert.equal(body['instance'], 'healthy-one');
    assert.equal(body['database'], 'up');

    const live = await fetch(`http://127.0.0.1:${port}/health/live`, { signal: AbortSignal.timeout(5_000) });
    assert.equal(live.status, 200);
    assert.deepEqual(await live.json(), { status: 'ok' });

    // An unknown job id is an empty page, not an error, on a real server too.
    const empty = await gqlResult<{ runs: { edges: unknown[] } }>(port, RUNS, { jobId: 'no-such-job' });
    assert.deepEqual(empty, { data: { runs: { edges: [] } } });

    service.signal('SIGTERM');
    assert.deepEqual(await service.waitForExit(10_000), { code: 0, signal: null }, service.output);
  });
});

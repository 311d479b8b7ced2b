// Runs held by one instance, changed through another's API: two service instances on one database,
// whose only link is the database (the LISTEN/NOTIFY relay and the rows).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import postgres from 'postgres';
import { createTestDatabase } from './helpers/db.ts';
import { operationsDir, testInstance } from './helpers/instance.ts';
import { gql, waitFor } from './helpers/process.ts';

const url = await createTestDatabase();
// Runs until it is told to stop; then it stops at once.
const ops = operationsDir(
  'export default { Hang: (ctx) => new Promise((resolve) => ctx.signal.addEventListener("abort", resolve)), Noop: async () => {} };\n',
);

const LEASE_SECONDS = 4;

const instance = (id: string) =>
  testInstance({
    DATABASE_URL: url,
    INSTANCE_ID: id,
    SERVER_OPERATIONS_DIR: ops,
    SERVER_OPERATIONS_WORKERS: '1',
    LEASE_SECONDS: String(LEASE_SECONDS),
    SHUTDOWN_GRACE_SECONDS: '2',
  });

interface Run {
  id: string;
  jobId: string;
  status: string;
  error: string | null;
  instance: string;
  finishedAt: string | null;
}
const RUN = 'id jobId status error instance finishedAt';

const createJob = (port: number, id: string, op: string) =>
  gql(
    port,
    `mutation($id: ID!, $call: String!) { createJob(input: {id: $id, name: "x", externalCall: $call, period: "1:0:0", timeoutSeconds: 600}) { id } }`,
    {
      id,
      call: `ServerOperationConnector:${op}`,
    },
  );
const runNow = async (port: number, id: string) =>
  (await gql<{ runJobNow: Run }>(port, `mutation($id: ID!) { runJobNow(id: $id) { ${RUN} } }`, { id })).runJobNow;

describe('runs held by another instance', () => {
  it('should answer cancelRun through instance B with the final CANCELLED row of a run instance A holds', async () => {
    const a = await instance('A');
    const b = await instance('B');
    await createJob(a.port, 'held-by-a', 'Hang');
    const run = await runNow(a.port, 'held-by-a');
    assert.deepEqual([run.status, run.instance], ['RUNNING', 'A']);
    await waitFor(() => a.scheduler.inFlightCount === 1, 'the run to be in flight on A');

    const { cancelRun } = await gql<{ cancelRun: Run }>(b.port, `mutation($id: ID!) { cancelRun(id: $id) { ${RUN} } }`, { id: run.id });
    assert.equal(cancelRun.id, run.id);
    assert.equal(cancelRun.status, 'CANCELLED');
    assert.equal(cancelRun.instance, 'A', 'A ended it');
    assert.notEqual(cancelRun.finishedAt, null);
    await waitFor(() => a.scheduler.inFlightCount === 0, 'A to let go of the run');
  });

  it('should end a run A holds when its job is deleted through B: CANCELLED "job deleted" at once, A aborts the call, the id starts afresh', async () => {
    const a = await instance('A2');
    const b = await instance('B2');
    await createJob(a.port, 'deleted-on-b', 'Hang');
    const run = await runNow(a.port, 'deleted-on-b');
    await waitFor(() => a.scheduler.inFlightCount === 1, 'the run to be in flight on A');

    await gql(b.port, 'mutation { deleteJob(id: "deleted-on-b") }');
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    after(() => sql.end());
    const row = async () =>
      (await sql<{ status: string; error: string | null }[]>`select status, error from job_runs where id = ${run.id}`)[0]!;
    assert.deepEqual(await row(), { status: 'CANCELLED', error: 'job deleted' }, 'ended in the delete itself');
    // A aborts the call (its operation returns on the abort), and its own end is refused.
    await waitFor(() => a.scheduler.inFlightCount === 0, 'A to abort the call');
    assert.deepEqual(await row(), { status: 'CANCELLED', error: 'job deleted' });

    // Re-created with the same id, through A: no running run is inherited.
    await createJob(a.port, 'deleted-on-b', 'Noop');
    const fresh = await runNow(b.port, 'deleted-on-b');
    assert.equal(fresh.status, 'RUNNING');
    await waitFor(
      async () => (await sql`select 1 from job_runs where id = ${fresh.id} and status = 'SUCCEEDED'`).length === 1,
      'the new run to succeed',
    );
  });
});

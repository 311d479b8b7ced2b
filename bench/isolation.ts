// What running server operations on worker threads costs, and what it buys (issue 7):
//   1. the cost of one call: a no-op operation on the main thread (as built-ins run) against the
//      same no-op on a worker, called one at a time and 50 at a time;
//   2. the lateness of 50 jobs at 0:0:1 before and while another job's operation spins its thread.
// Prints a table and writes JSON to bench/results/. Uses BENCH_DATABASE_URL, or a throwaway
// embedded PostgreSQL.
//
//   npm run bench:isolation
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { gql as gqlPort, ServiceProcess } from '../test/helpers/process.ts';
import { round, summary } from './lib.ts';
import { callCost } from './sections/isolation.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-bench-'));
await fs.chmod(tmp, 0o755);
const opsDir = path.join(tmp, 'operations');
await fs.mkdir(opsDir);
await fs.writeFile(path.join(opsDir, 'bench.mjs'), `export default { async Noop() {}, async Spin() { for (;;) {} } };\n`);

// --- 1. Per-call cost -------------------------------------------------------------------------
// --- 2. Lateness of the others while one spins ------------------------------------------------
async function latenessWhileSpinning(databaseUrl: string) {
  // The same process helper the tests and the chaos harness use: it waits for the `listening` record.
  const service = new ServiceProcess(
    { DATABASE_URL: databaseUrl, SERVER_OPERATIONS_DIR: opsDir, SERVER_OPERATIONS_WORKERS: '2', LOG_LEVEL: 'info' },
    { compiled: true },
  );
  const port = await service.waitUntilListening();
  const gql = (query: string, variables: Record<string, unknown> = {}) => gqlPort(port, query, variables);
  const create = `mutation ($input: CreateJobInput!) { createJob(input: $input) { id } }`;
  try {
    for (let i = 0; i < 50; i++)
      await gql(create, { input: { id: `noop-${i}`, name: 'noop', externalCall: 'ServerOperationConnector:Noop', period: '0:0:1' } });
    await gql(create, {
      input: { id: 'spin', name: 'spin', externalCall: 'ServerOperationConnector:Spin', period: '1:0:0', timeoutSeconds: 2 },
    });
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    await sleep(10_000); // the baseline
    for (let i = 0; i < 3; i++) {
      await gql(`mutation { runJobNow(id: "spin") { id } }`);
      await sleep(4_000);
    }
  } finally {
    await service.stop();
  }
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const spins = await sql<{ from: Date; to: Date; status: string }[]>`
      select started_at as from, finished_at as to, status from job_runs where job_id = 'spin' order by id`;
    const runs = await sql<{ scheduled: Date; started: Date | null; finished: Date | null; status: string; missed: number }[]>`
      select scheduled_at as scheduled, started_at as started, finished_at as finished, status, missed
      from job_runs where job_id like 'noop-%' and status <> 'RUNNING'`;
    const firstSpin = spins[0]!.from.getTime();
    const during = (t: number) => spins.some((s) => t >= s.from.getTime() && t <= (s.to ?? s.from).getTime());
    const window = (pick: (t: number) => boolean) => {
      const chosen = runs.filter((r) => pick(r.scheduled.getTime()));
      return {
        runs: chosen.length,
        notSucceeded: chosen.filter((r) => r.status !== 'SUCCEEDED' || r.missed > 0).length,
        // The call's end, less its due time: what a blocked worker would delay.
        doneLatenessMs: summary(chosen.filter((r) => r.finished).map((r) => r.finished!.getTime() - r.scheduled.getTime())),
      };
    };
    return {
      spins: spins.map((s) => s.status),
      before: window((t) => t < firstSpin - 1000),
      whileSpinning: window(during),
    };
  } finally {
    await sql.end();
  }
}

let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
try {
  const cost = await callCost(opsDir);
  let databaseUrl = process.env['BENCH_DATABASE_URL'];
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({ dataDir: path.join(tmp, 'pg'), database: 'postgres', log: { info() {}, warn() {} } });
    databaseUrl = embedded.url;
  }
  const lateness = await latenessWhileSpinning(databaseUrl);

  const line = (cells: (string | number)[]) => console.log(cells.map((c) => String(c).padEnd(14)).join(''));
  console.log('\nPer call, a no-op operation (µs; 5,000 sequential calls; then 10,000 calls 50 at a time)');
  line(['where', 'p50', 'p99', 'max', 'calls/s @50', 'CPU µs/call']);
  for (const label of ['in-process', 'worker'] as const) {
    const { sequentialMicros: s, concurrent50: c } = cost[label];
    line([label, round(s.p50), round(s.p99), round(s.max), c.callsPerSecond, c.cpuMicrosPerCall]);
  }
  const ratio = cost.worker.sequentialMicros.p50 / cost['in-process'].sequentialMicros.p50;
  console.log(`worker / in-process, p50: ${round(ratio)}×`);
  console.log('\n50 jobs at 0:0:1 calling Noop; "spin" runs an endless loop three times (timeout 2 s)');
  line(['window', 'runs', 'not OK', 'done p50 ms', 'p99 ms', 'max ms']);
  for (const [label, w] of [
    ['before', lateness.before],
    ['while spinning', lateness.whileSpinning],
  ] as const) {
    line([label, w.runs, w.notSucceeded, w.doneLatenessMs.p50, w.doneLatenessMs.p99, w.doneLatenessMs.max]);
  }
  console.log(`spin runs: ${lateness.spins.join(', ')}`);

  const dir = path.join(root, 'bench', 'results');
  await fs.mkdir(dir, { recursive: true });
  const file = path.join(dir, `isolation-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  await fs.writeFile(
    file,
    `${JSON.stringify({ at: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cost, lateness }, null, 2)}\n`,
  );
  console.log(`\nwritten to ${path.relative(root, file)}`);
} finally {
  await embedded?.stop();
  await fs.rm(tmp, { recursive: true, force: true });
}

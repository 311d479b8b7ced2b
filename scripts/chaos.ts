// `npm run chaos`: the long form of the fault scenarios (GitHub issue 4). Starts N instances of
// the service as separate processes on one PostgreSQL, creates jobs, injects faults, stops the
// instances and audits the database. Throughout, a tenth of the jobs is paused, resumed,
// re-periodised, deleted and run now a few ms after their due times, and subscribers on every
// instance (graphql-ws and SSE) receive the job events; the audit covers both. Beside the plain
// period jobs the mix has cron jobs (one zone with daylight saving), jobs that fail some of the
// time and are retried, and QUEUE_ONE jobs whose runs outlast their period (chaos/mix.ts): the
// audit checks their due times and retry attempts too. Prints a table per scenario, writes JSON
// to bench/results/chaos-<timestamp>.json, and exits 1 when an invariant fails.
//
//   npm run chaos                                   every scenario, 3 instances, 300 jobs, 180 s each
//   npm run chaos -- --scenario=kill --instances=3 --jobs=300 --duration=180
//   npm run chaos -- --scenario=healthy,freeze --duration=60 --lease=5
//
// Options: --scenario=all|healthy|kill|freeze|db-restart|terminate|clock-skew (comma-separated),
// --instances=3, --jobs=300, --duration=180 (seconds of faults per scenario), --lease=15
// (LEASE_SECONDS), --period=0:0:1, --every=<s> (seconds between faults; default 30 for kill,
// freeze and terminate; db-restart restarts once, in the middle, unless --every is given),
// --down=5 (db-restart: seconds the database stays down), --skew=+5m[,-5m] (clock-skew),
// --operation=Noop|Work, --work-ms=300, --changes=<n> (jobs changed during the scenario; default
// a tenth of --jobs, 0: none; period jobs only), --cron=<n>, --retry=<n>, --queue=<n> (jobs of
// each kind in the mix; default a tenth of --jobs each, 0: none), --subscribers=on|off (default
// on), --seed=<n> (the changes' choices), --keep (keep the work directory: logs, data),
// --out=<file>. The PostgreSQL is embedded, in a temporary directory, unless CHAOS_DATABASE_URL
// names a server (the harness then creates a database per scenario there, and skips db-restart).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { killEveryProcess } from '../test/helpers/process.ts';
import { type ChaosServer, createDatabase, dropDatabase, externalServer, redact, startChaosPostgres } from '../chaos/database.ts';
import { cannotRun, runScenario } from '../chaos/faults.ts';
import { SCENARIOS, type ScenarioName, type ScenarioResult } from '../chaos/scenario.ts';
import { type ChaosReport, explainFailures, formatScenario, writeReport } from '../chaos/report.ts';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'all' },
    instances: { type: 'string', default: '3' },
    jobs: { type: 'string', default: '300' },
    duration: { type: 'string', default: '180' },
    lease: { type: 'string', default: '15' },
    period: { type: 'string', default: '0:0:1' },
    every: { type: 'string' },
    down: { type: 'string', default: '5' },
    skew: { type: 'string' },
    operation: { type: 'string' },
    'work-ms': { type: 'string', default: '300' },
    changes: { type: 'string' },
    cron: { type: 'string' },
    retry: { type: 'string' },
    queue: { type: 'string' },
    subscribers: { type: 'string', default: 'on' },
    seed: { type: 'string' },
    keep: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (values.help) {
  const text = await fs.readFile(new URL(import.meta.url), 'utf8');
  console.log(
    text
      .split('\n')
      .filter((l) => l.startsWith('//'))
      .map((l) => l.slice(3))
      .join('\n'),
  );
  process.exit(0);
}

const problems: string[] = [];
const int = (name: string, value: string | undefined, min: number, max: number): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) problems.push(`--${name} must be an integer from ${min} to ${max} (got ${value})`);
  return n;
};
const scenarios = (values.scenario === 'all' ? [...SCENARIOS] : values.scenario.split(',').map((s) => s.trim())) as ScenarioName[];
for (const s of scenarios)
  if (!SCENARIOS.includes(s)) problems.push(`--scenario: unknown scenario "${s}" (known: all, ${SCENARIOS.join(', ')})`);
const instances = int('instances', values.instances, 1, 20);
const jobs = int('jobs', values.jobs, 1, 100_000);
const duration = int('duration', values.duration, 1, 86_400);
const lease = int('lease', values.lease, 2, 3600);
const every = values.every === undefined ? undefined : int('every', values.every, 1, 86_400);
const down = int('down', values.down, 0, 3600);
const workMs = int('work-ms', values['work-ms'], 0, 60_000);
const changes = values.changes === undefined ? undefined : int('changes', values.changes, 0, 100_000);
const mixCount = (name: 'cron' | 'retry' | 'queue') =>
  values[name] === undefined ? Math.round(jobs / 10) : int(name, values[name], 0, 100_000);
const mix = { cron: mixCount('cron'), retry: mixCount('retry'), queue: mixCount('queue') };
if (mix.cron + mix.retry + mix.queue > jobs) problems.push(`--cron, --retry and --queue add up to more than --jobs (${jobs})`);
const seed = values.seed === undefined ? undefined : int('seed', values.seed, 0, 2 ** 31 - 1);
if (values.subscribers !== 'on' && values.subscribers !== 'off')
  problems.push(`--subscribers must be on or off (got ${values.subscribers})`);
const operation = values.operation as 'Noop' | 'Work' | undefined;
if (operation !== undefined && operation !== 'Noop' && operation !== 'Work') problems.push('--operation must be Noop or Work');
if (!/^\d+:\d{1,2}:\d{1,2}$/.test(values.period)) problems.push(`--period must be h:m:s (got ${values.period})`);
if (problems.length) {
  console.error(`npm run chaos: ${problems.join('\n  ')}\n(see --help)`);
  process.exit(2);
}

const startedAt = new Date();
const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-chaos-'));
await fs.chmod(workDir, 0o755);
let server: ChaosServer | undefined;
let interrupted = false;
const cleanup = async () => {
  await server?.stop().catch((e: unknown) => console.error(e));
  if (!values.keep) await fs.rm(workDir, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${sig}: stopping`);
    killEveryProcess();
    void cleanup().finally(() => process.exit(130));
  });
}

const results: ScenarioResult[] = [];
let code = 0;
try {
  const external = process.env['CHAOS_DATABASE_URL'];
  server = external ? externalServer(external) : await startChaosPostgres(path.join(workDir, 'pg'));
  const shownDb = external ? `${redact(external)} (CHAOS_DATABASE_URL)` : 'embedded PostgreSQL (temporary)';
  console.log(`chaos: ${scenarios.join(', ')} on ${shownDb}; work directory ${workDir}${values.keep ? ' (kept)' : ''}`);

  for (const scenario of scenarios) {
    const name = `server_jobs_chaos_${scenario.replace('-', '_')}_${Date.now()}`;
    const why = cannotRun(scenario, server);
    console.log(`\n-- ${scenario}${why ? '' : ` (database ${name})`}`);
    let result: ScenarioResult;
    if (why) {
      result = await runScenario({ scenario, databaseUrl: '', workDir, instances, jobs, durationSeconds: duration, leaseSeconds: lease });
    } else {
      const databaseUrl = await createDatabase(server.url, name);
      try {
        result = await runScenario({
          scenario,
          databaseUrl,
          server,
          workDir: path.join(workDir, scenario),
          instances,
          jobs,
          durationSeconds: duration,
          leaseSeconds: lease,
          period: values.period,
          workMs,
          ...(operation ? { operation } : {}),
          ...(every !== undefined ? { faultEverySeconds: every } : {}),
          downSeconds: down,
          ...(values.skew ? { clockOffsets: values.skew.split(',') } : {}),
          ...(changes !== undefined ? { changeJobs: changes } : {}),
          mix,
          subscribers: values.subscribers === 'on',
          ...(seed !== undefined ? { seed } : {}),
          log: (line) => console.log(line),
        });
      } finally {
        if (!values.keep) await dropDatabase(server.url, name).catch(() => {});
      }
    }
    results.push(result);
    console.log(`\n${formatScenario(result)}`);
    if (!result.ok) console.log(explainFailures(result));
    if (!result.ok) code = 1;
  }
} catch (error) {
  console.error(error);
  code = 1;
} finally {
  const report: ChaosReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: { node: process.version, platform: `${process.platform}-${process.arch}`, cpus: os.cpus().length },
    database: process.env['CHAOS_DATABASE_URL'] ? 'external' : 'embedded',
    ok: code === 0,
    scenarios: results,
  };
  if (results.length) {
    const file = await writeReport(report, values.out);
    console.log(`\nJSON: ${path.relative(process.cwd(), file)}`);
  }
  const failed = results.filter((r) => !r.ok).map((r) => r.scenario);
  const skipped = results.filter((r) => r.skipped).map((r) => r.scenario);
  console.log(
    `chaos: ${failed.length ? `FAILED (${failed.join(', ')})` : code ? 'FAILED' : 'all invariants held'}` +
      `${skipped.length ? `; skipped: ${skipped.join(', ')}` : ''}`,
  );
  await cleanup();
}
process.exit(code);

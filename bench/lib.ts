// What every section of `npm run bench` shares: a PostgreSQL to run against (BENCH_DATABASE_URL,
// else a throwaway embedded one), a fresh database per measurement, the service as a real process,
// GraphQL against it, the process's memory and CPU, and the statistics a table quotes.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { gql as gqlPort, ServiceProcess } from '../test/helpers/process.ts';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One line of the printed table. `baseline` names what the value is compared with, when it is. */
export interface ResultRow {
  metric: string;
  value: number | string;
  unit?: string;
  note?: string;
}

/** What one section measured: rows for the table, and anything else worth keeping in the JSON. */
export interface SectionResult {
  name: string;
  rows: ResultRow[];
  data?: unknown;
}

export interface BenchContext {
  /** A scratch directory of this bench run. */
  tmp: string;
  /** A directory of server operations holding `Noop` (resolves at once) and `Sleep10` (10 ms). */
  operationsDir: string;
  /** A connection string to a maintenance database where fresh databases may be created. */
  adminUrl: string;
  /** Where the database server runs: 'embedded' (PostgreSQL 18 from npm) or 'server' (BENCH_DATABASE_URL). */
  databaseKind: 'embedded' | 'server';
  /** Short runs for a smoke test of the harness (`--quick`). */
  quick: boolean;
}

export const percentile = (sorted: number[], p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export interface Summary {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export function summary(values: number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  const list = Array.from(sorted);
  return { n: list.length, p50: percentile(list, 50), p99: percentile(list, 99), max: list.at(-1) ?? NaN };
}

export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

/** `summary`, each figure rounded to a tenth. */
export function roundedSummary(values: number[]): Summary {
  const s = summary(values);
  return { n: s.n, p50: round(s.p50), p99: round(s.p99), max: round(s.max) };
}
export const median = (values: number[]): number =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the bench's database server (or takes BENCH_DATABASE_URL's) and the scratch directory. */
export async function openBench(quick: boolean): Promise<{ context: BenchContext; close(): Promise<void> }> {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-bench-'));
  await fs.chmod(tmp, 0o755);
  const operationsDir = path.join(tmp, 'operations');
  await fs.mkdir(operationsDir);
  await fs.writeFile(
    path.join(operationsDir, 'bench.mjs'),
    // Flaky fails every other call (per worker thread): the retries' load.
    `let calls = 0;\nexport default { async Noop() {}, async Sleep10() { await new Promise((r) => setTimeout(r, 10)); }, async Flaky() { if (++calls % 2) throw new Error('flaky'); } };\n`,
  );
  const given = process.env['BENCH_DATABASE_URL'];
  const embedded = given
    ? undefined
    : await startEmbeddedPostgres({ dataDir: path.join(tmp, 'pg'), database: 'postgres', log: { info() {}, warn() {} } });
  const adminUrl = given ?? embedded!.url;
  return {
    context: { tmp, operationsDir, adminUrl, databaseKind: given ? 'server' : 'embedded', quick },
    async close() {
      await embedded?.stop();
      await fs.rm(tmp, { recursive: true, force: true });
    },
  };
}

let databases = 0;

/** Creates an empty database for one measurement and returns its URL. */
export async function freshDatabase(context: BenchContext, label: string): Promise<string> {
  const name = `bench_${process.pid}_${++databases}_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`.slice(0, 60);
  const admin = postgres(context.adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(context.adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a database made by freshDatabase, once nothing uses it. */
export async function dropDatabase(context: BenchContext, url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = postgres(context.adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}

export interface RunningService {
  process: ServiceProcess;
  port: number;
  gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>): Promise<T>;
  stop(graceMs?: number): Promise<void>;
}

/** Starts the service on a database with the bench's operations; its log at info. */
export async function startService(
  context: BenchContext,
  databaseUrl: string,
  env: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<RunningService> {
  const service = new ServiceProcess(
    { DATABASE_URL: databaseUrl, SERVER_OPERATIONS_DIR: context.operationsDir, LOG_LEVEL: 'info', ...env },
    // What `npm start` runs (the compiled service), so that its memory and CPU are the users'.
    { nodeArgs, compiled: true },
  );
  const port = await service.waitUntilListening();
  return {
    process: service,
    port,
    gql: <T>(query: string, variables?: Record<string, unknown>) => gqlPort<T>(port, query, variables, 120_000),
    async stop(graceMs = 10_000) {
      await service.stop(graceMs);
    },
  };
}

/** The resident set size of a process in MB, from /proc. */
export async function rssMb(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return round(kb / 1024, 0);
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command.
  // In clock ticks, 100 a second on Linux.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** createJob fields per request: within the service's GRAPHQL_MAX_ALIASES (30 by default). */
export const CREATE_PER_REQUEST = 25;
/** createJob requests in flight at a time. */
export const CREATE_IN_FLIGHT = 4;

export interface Created {
  perSecond: number;
  seconds: number;
  /** How long each request took, in ms. */
  requestMs: Summary;
}

/**
 * Creates `count` jobs at 0:0:1 through the API, CREATE_PER_REQUEST aliased createJob fields a
 * request, CREATE_IN_FLIGHT requests at a time. Ids are `<prefix>-<n>` from `from` on (Cyrillic
 * by default, names too); `input(n)` adds to or overrides each job's input.
 */
export async function createJobs(
  service: RunningService,
  count: number,
  options: { prefix?: string; from?: number; input?: (n: number) => Record<string, unknown> } = {},
): Promise<Created> {
  const prefix = options.prefix ?? 'задача';
  const base = options.from ?? 0;
  const requestMs: number[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const from = next;
      const size = Math.min(CREATE_PER_REQUEST, count - from);
      next += size;
      const variables: Record<string, unknown> = {};
      for (let i = 0; i < size; i++) {
        const n = base + from + i;
        variables[`i${i}`] = {
          id: `${prefix}-${n}`,
          name: `Выгрузка ${n}`,
          externalCall: 'ServerOperationConnector:Noop',
          period: '0:0:1',
          ...options.input?.(n),
        };
      }
      const declared = Array.from({ length: size }, (_, i) => `$i${i}: CreateJobInput!`).join(', ');
      const fields = Array.from({ length: size }, (_, i) => `j${i}: createJob(input: $i${i}) { id }`).join(' ');
      const asked = performance.now();
      const answer = await service.gql<Record<string, { id: string }>>(`mutation Create(${declared}) { ${fields} }`, variables);
      requestMs.push(performance.now() - asked);
      if (Object.keys(answer).length !== size) throw new Error(`created ${Object.keys(answer).length} of ${size} jobs`);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CREATE_IN_FLIGHT }, worker));
  const seconds = (performance.now() - started) / 1000;
  return { perSecond: count / seconds, seconds, requestMs: roundedSummary(requestMs) };
}

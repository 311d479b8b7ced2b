// The bare database (issue 11, SPEC §9): the rate at which the same PostgreSQL accepts rows shaped
// like ours from a plain client. Each trial migrates a fresh database with the service's own
// migrations (so `job_runs` has exactly the service's columns, indexes and storage settings), then
// inserts finished runs, as the service's claim writes them, with postgres.js (the service's
// driver, from the service's node_modules): 1,000 rows a statement, one connection, statements one
// after another. Then, once, one statement per row, awaited one by one.
import postgres from 'postgres';
import { runMigrations } from '../../src/db/migrate.ts';
import { type BenchContext, dropDatabase, freshDatabase, median, round, type SectionResult } from '../lib.ts';

const ROWS_PER_STATEMENT = 1_000;
/** 10,000 jobs at `0:0:1`: a row per job per second, as the service would write them. */
const JOBS = 10_000;
const COLUMNS = [
  'job_id',
  'trigger',
  'scheduled_at',
  'started_at',
  'finished_at',
  'status',
  'instance',
  'missed',
  'lease_token',
  'lease_expires_at',
] as const;

type RunInsert = Record<(typeof COLUMNS)[number], string | number | Date | null>;

const epoch = Date.UTC(2030, 0, 1);
const token = '6f1c1b3e-8a40-4c8e-9a55-2f0a3c7d9b10';

/** The i-th finished run: job i mod 10,000 at second i div 10,000, started 2 ms late, 1 ms long. */
function run(i: number): RunInsert {
  const scheduledAt = epoch + Math.floor(i / JOBS) * 1000;
  return {
    job_id: `job-${i % JOBS}`,
    trigger: 'SCHEDULE',
    scheduled_at: new Date(scheduledAt),
    started_at: new Date(scheduledAt + 2),
    finished_at: new Date(scheduledAt + 3),
    status: 'SUCCEEDED',
    instance: 'bench-instance',
    missed: 0,
    lease_token: token,
    lease_expires_at: new Date(scheduledAt + 30_000),
  };
}

async function withMigratedDatabase<T>(context: BenchContext, label: string, body: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const url = await freshDatabase(context, label);
  try {
    await runMigrations(url);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      return await body(sql);
    } finally {
      await sql.end({ timeout: 5 });
    }
  } finally {
    await dropDatabase(context, url);
  }
}

/** Rows per second of `rows` rows, 1,000 a statement; the rows are built before the clock starts. */
async function multiRowTrial(context: BenchContext, rows: number): Promise<number> {
  const batches: RunInsert[][] = [];
  for (let i = 0; i < rows; i += ROWS_PER_STATEMENT) {
    batches.push(Array.from({ length: Math.min(ROWS_PER_STATEMENT, rows - i) }, (_, k) => run(i + k)));
  }
  return withMigratedDatabase(context, 'bare_multi', async (sql) => {
    // Warm the connection and the statement's plan, then measure.
    await sql`insert into job_runs ${sql(
      batches[0]!.slice(0, 10).map((r, k) => ({ ...r, job_id: `warm-${k}` })),
      ...COLUMNS,
    )}`;
    const start = performance.now();
    for (const batch of batches) await sql`insert into job_runs ${sql(batch, ...COLUMNS)}`;
    const seconds = (performance.now() - start) / 1000;
    const [count] = await sql<{ n: number }[]>`select count(*)::int as n from job_runs where job_id like 'job-%'`;
    if (count!.n !== rows) throw new Error(`bare insert: ${count!.n} rows stored of ${rows}`);
    return rows / seconds;
  });
}

/** Rows per second, one awaited INSERT per row (autocommit), as a writer that batches nothing gets. */
async function singleRowTrial(context: BenchContext, rows: number): Promise<number> {
  const all = Array.from({ length: rows }, (_, i) => run(i));
  return withMigratedDatabase(context, 'bare_single', async (sql) => {
    const insert = (r: RunInsert) => sql`insert into job_runs ${sql(r, ...COLUMNS)}`;
    await insert({ ...all[0]!, job_id: 'warm' });
    const start = performance.now();
    for (const r of all) await insert(r);
    return rows / ((performance.now() - start) / 1000);
  });
}

export async function bareInsert(context: BenchContext): Promise<SectionResult> {
  const rows = context.quick ? 20_000 : 200_000;
  const trials = context.quick ? 1 : 3;
  const multi: number[] = [];
  for (let t = 0; t < trials; t++) multi.push(await multiRowTrial(context, rows));
  const singleRows = context.quick ? 1_000 : 5_000;
  const single = await singleRowTrial(context, singleRows);
  const kind = `${context.databaseKind} PostgreSQL`;
  return {
    name: 'Bare database: job_runs rows from a plain client',
    rows: [
      {
        metric: `INSERT ${ROWS_PER_STATEMENT.toLocaleString('en')} rows a statement`,
        value: round(median(multi), 0),
        unit: 'rows/s',
        note: `median of ${trials} × ${rows.toLocaleString('en')} rows, one connection, ${kind}`,
      },
      {
        metric: 'INSERT one row a statement',
        value: round(single, 0),
        unit: 'rows/s',
        note: `1 × ${singleRows.toLocaleString('en')} rows awaited one by one, ${kind}`,
      },
    ],
    data: {
      rowsPerStatement: ROWS_PER_STATEMENT,
      rowsPerTrial: rows,
      multiRowTrials: multi.map((x) => round(x, 0)),
      singleRow: { rows: singleRows, rowsPerSecond: round(single, 0) },
      databaseKind: context.databaseKind,
    },
  };
}

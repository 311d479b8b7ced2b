import postgres from 'postgres';

export type Sql = postgres.Sql;
/** A pool or a transaction: what a single query needs. */
export type Queryable = postgres.Sql | postgres.TransactionSql;

export interface Database {
  sql: Sql;
  close(): Promise<void>;
}

/**
 * Queries are plain postgres.js SQL (drizzle defines the schema and migrations only: its
 * driver would replace this client's date serializers).
 */
export function connect(
  url: string,
  options: { max?: number; applicationName?: string; idleInTransactionMs?: number } = {},
): Database {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    // Rows arrive with camelCase keys, matching the types in rows.ts.
    transform: postgres.camel,
    connection: {
      application_name: options.applicationName ?? 'server-jobs',
      // A process frozen inside a transaction (SIGSTOP, a long GC pause) must not hold job row
      // locks for the whole freeze: the server ends such a session and the locks go with it.
      ...(options.idleInTransactionMs ? { idle_in_transaction_session_timeout: options.idleInTransactionMs } : {}),
    },
    idle_timeout: 60,
    // While the database is away, fail fast and retry rather than hang for the default 30 s.
    connect_timeout: 5,
    // Reconnect attempts at most 2 s apart: postgres.js's default backoff, counted across the
    // pool, waits up to 20 s, so an instance resumed long after its database came back.
    backoff: (retries: number) => Math.min(0.05 * 2 ** retries, 2),
  });
  return { sql, close: () => sql.end({ timeout: 5 }) };
}

/** Database time minus local time, measured at the midpoint of a round trip. */
export async function measureClockOffset(sql: Sql): Promise<number> {
  const before = Date.now();
  const [row] = await sql<{ ms: number }[]>`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
  const after = Date.now();
  return row!.ms - (before + after) / 2;
}

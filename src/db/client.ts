import postgres from 'postgres';
import type { ClockSample } from '../clock.ts';

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
export function connect(url: string, options: { max?: number; applicationName?: string; idleInTransactionMs?: number } = {}): Database {
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

/**
 * Reads the database's clock_timestamp() `count` times, each bracketed by local monotonic
 * readings (`monotonicMs`), for `bestOffset` to choose from. Meant for a connection of its own
 * (a client with max 1): on the shared pool a sample would include the wait for a free
 * connection. A first query opens the connection, so no sample pays for its set-up.
 */
export async function sampleDatabaseClock(sql: Sql, monotonicMs: () => number, count = 5): Promise<ClockSample[]> {
  await sql`select 1`;
  const samples: ClockSample[] = [];
  for (let i = 0; i < count; i++) {
    const sentMs = monotonicMs();
    const [row] = await sql<{ ms: number }[]>`select (extract(epoch from clock_timestamp()) * 1000)::float8 as ms`;
    const receivedMs = monotonicMs();
    samples.push({ sentMs, dbMs: row!.ms, receivedMs });
  }
  return samples;
}

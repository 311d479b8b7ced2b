import type { Circuit } from '../connectors/circuit.ts';
import type { Queryable } from './client.ts';
import type { ConnectorRow } from './rows.ts';

/** A connector's definition as createConnector gives it; its circuit starts CLOSED. */
export type NewConnector = Pick<
  ConnectorRow,
  | 'id'
  | 'kind'
  | 'baseUrl'
  | 'headers'
  | 'authScheme'
  | 'secret'
  | 'timeoutSeconds'
  | 'breakerFailures'
  | 'breakerProbeSeconds'
  | 'maxConcurrent'
>;

/** Inserts a connector; null when the id is taken. */
export async function insertConnector(sql: Queryable, row: NewConnector, now: Date): Promise<ConnectorRow | null> {
  const rows = await sql<ConnectorRow[]>`
    insert into connectors (id, kind, base_url, headers, auth_scheme, secret, timeout_seconds,
                            breaker_failures, breaker_probe_seconds, max_concurrent, created_at, updated_at)
    values (${row.id}, ${row.kind}, ${row.baseUrl}, ${sql.json(row.headers)}, ${row.authScheme}, ${row.secret},
            ${row.timeoutSeconds}, ${row.breakerFailures}, ${row.breakerProbeSeconds}, ${row.maxConcurrent}, ${now}, ${now})
    on conflict (id) do nothing
    returning *`;
  return rows[0] ?? null;
}

export async function lockConnector(sql: Queryable, id: string): Promise<ConnectorRow | null> {
  const rows = await sql<ConnectorRow[]>`select * from connectors where id = ${id} for update`;
  return rows[0] ?? null;
}

/** Saves a connector's definition and its circuit (the caller holds its row lock). */
export async function saveConnector(sql: Queryable, row: ConnectorRow): Promise<ConnectorRow> {
  const [saved] = await sql<ConnectorRow[]>`
    update connectors set base_url = ${row.baseUrl}, headers = ${sql.json(row.headers)}, auth_scheme = ${row.authScheme},
           secret = ${row.secret}, timeout_seconds = ${row.timeoutSeconds}, breaker_failures = ${row.breakerFailures},
           breaker_probe_seconds = ${row.breakerProbeSeconds}, max_concurrent = ${row.maxConcurrent},
           circuit_state = ${row.circuitState}, circuit_failures = ${row.circuitFailures}, circuit_opened_at = ${row.circuitOpenedAt},
           circuit_next_probe_at = ${row.circuitNextProbeAt}, circuit_probe_run_id = ${row.circuitProbeRunId},
           updated_at = ${row.updatedAt}
    where id = ${row.id}
    returning *`;
  return saved!;
}

/**
 * These connectors' rows, locked in id order (the same order everywhere: no deadlock between two
 * claims). Their circuits change only under these locks, so every instance sees one circuit.
 */
export async function lockConnectors(sql: Queryable, ids: readonly string[]): Promise<ConnectorRow[]> {
  return sql<ConnectorRow[]>`select * from connectors where id = any(${sql.array([...ids])}::text[]) order by id for update`;
}

/** A connector's row as it stands, unlocked; null when it is gone. */
export async function readConnector(sql: Queryable, id: string): Promise<ConnectorRow | null> {
  const rows = await sql<ConnectorRow[]>`select * from connectors where id = ${id}`;
  return rows[0] ?? null;
}

/** Writes a connector's circuit (the caller holds its row lock). */
export async function saveCircuit(sql: Queryable, id: string, circuit: Circuit): Promise<void> {
  await sql`
    update connectors set circuit_state = ${circuit.state}, circuit_failures = ${circuit.failures},
           circuit_opened_at = ${circuit.openedAt}, circuit_next_probe_at = ${circuit.nextProbeAt},
           circuit_probe_run_id = ${circuit.probeRunId}
    where id = ${id}`;
}

export async function deleteConnectorRow(sql: Queryable, id: string): Promise<boolean> {
  return (await sql`delete from connectors where id = ${id} returning id`).length > 0;
}

export async function listConnectorRows(sql: Queryable): Promise<ConnectorRow[]> {
  return sql<ConnectorRow[]>`select * from connectors order by id`;
}

export async function jobsUsingConnector(sql: Queryable, id: string): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`select id from jobs where connector_id = ${id} order by id limit 20`;
  return rows.map((r) => r.id);
}

/** The stored secrets, locked for this transaction (the start's encryption and key rotation). */
export async function lockConnectorSecrets(sql: Queryable): Promise<{ id: string; secret: string }[]> {
  return sql<{ id: string; secret: string }[]>`select id, secret from connectors where secret is not null order by id for update`;
}

/** Replaces a stored secret by another form of it (encrypted, or under a new key); the row is otherwise unchanged. */
export async function saveConnectorSecret(sql: Queryable, id: string, secret: string): Promise<void> {
  await sql`update connectors set secret = ${secret} where id = ${id}`;
}

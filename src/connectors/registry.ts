import type { Sql } from '../db/client.ts';
import { listConnectorRows } from '../db/connectors.ts';
import type { ConnectorRow } from '../db/rows.ts';
import { SecretBox } from './secret-box.ts';
import type { Connector, ConnectorEntry, ConnectorRegistry } from './types.ts';

/**
 * A stored row with its secret decrypted; when it cannot be, `secret` is null and `secretProblem`
 * says why (its runs then fail with that message).
 */
export type OpenedConnectorRow = ConnectorRow & { secretProblem?: string };

/** Builds a configured connector of one kind from its stored row. */
export type ConnectorFactory = (row: OpenedConnectorRow) => Connector;

/**
 * The built-in connectors plus those configured in the database, kept in memory so that a run
 * resolves its connector without a query. `reload` re-reads the table when a change is announced
 * on the bus (see reactions.ts), whichever instance made it.
 */
export class DatabaseConnectorRegistry implements ConnectorRegistry {
  #configured = new Map<string, ConnectorEntry>();
  #loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly builtIns: Connector[],
    private readonly kinds: Record<ConnectorRow['kind'], ConnectorFactory>,
    /** Opens the stored secrets (`SECRETS_KEY`); by default they are plain text. */
    private readonly secrets: SecretBox = new SecretBox({ key: null }),
  ) {}

  /**
   * Re-reads the configured connectors. A connector whose row is unchanged keeps its instance
   * (and its kept-alive connections); one whose row changed is rebuilt, and the replaced or
   * removed instances are closed.
   */
  reload(): Promise<void> {
    this.#loading = this.#loading
      .catch(() => {})
      .then(async () => {
        const rows = await listConnectorRows(this.sql);
        const previous = this.#configured;
        const next = new Map<string, ConnectorEntry>();
        for (const row of rows) {
          const kept = previous.get(row.id);
          next.set(row.id, kept && sameRow(kept.row, row) ? kept : { connector: this.kinds[row.kind](this.#opened(row)), row });
        }
        this.#configured = next;
        for (const [id, entry] of previous) {
          if (next.get(id) !== entry) closeQuietly(entry.connector);
        }
      });
    return this.#loading;
  }

  #opened(row: ConnectorRow): OpenedConnectorRow {
    if (row.secret === null) return row;
    try {
      return { ...row, secret: this.secrets.open(row.secret, row.id) };
    } catch (error) {
      return { ...row, secret: null, secretProblem: `Connector ${row.id}: its secret cannot be decrypted: ${(error as Error).message}` };
    }
  }

  /** Resolves once the reloads asked for so far are done, whether they succeeded or not. */
  settled(): Promise<void> {
    return this.#loading.catch(() => {});
  }

  /** Closes every configured connector (at shutdown). */
  close(): void {
    for (const entry of this.#configured.values()) closeQuietly(entry.connector);
  }

  get(id: string): Connector | undefined {
    return this.builtIns.find((c) => c.id === id) ?? this.#configured.get(id)?.connector;
  }

  /** The stored row of a configured connector as last loaded (null for a built-in or unknown one). */
  rowOf(id: string): ConnectorRow | null {
    return this.#configured.get(id)?.row ?? null;
  }

  isBuiltIn(id: string): boolean {
    return this.builtIns.some((c) => c.id === id);
  }

  list(): Connector[] {
    return this.entries().map((e) => e.connector);
  }

  entries(): ConnectorEntry[] {
    return [
      ...this.builtIns.map((connector) => ({ connector, row: null })),
      ...[...this.#configured.values()].sort((a, b) => a.connector.id.localeCompare(b.connector.id)),
    ];
  }
}

/**
 * Whether two stored rows configure the same connector (every column, updatedAt included, but
 * the circuit's: it changes with calls' outcomes, and a connector is not rebuilt, its kept-alive
 * connections dropped, for that).
 */
function sameRow(a: ConnectorRow | null, b: ConnectorRow): boolean {
  return a !== null && configuration(a) === configuration(b);
}

const configuration = (row: ConnectorRow): string =>
  JSON.stringify(row, (key, value: unknown) => (key.startsWith('circuit') ? undefined : value));

function closeQuietly(connector: Connector): void {
  try {
    connector.close?.();
  } catch {
    // Releasing is best effort: a connector that fails to close is dropped all the same.
  }
}

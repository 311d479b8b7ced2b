import type { Sql } from '../db/client.ts';
import { listConnectorRows } from '../db/connectors.ts';
import type { ConnectorRow } from '../db/rows.ts';
import type { Connector, ConnectorEntry, ConnectorRegistry } from './types.ts';

/** Builds a configured connector of one kind from its stored row. */
export type ConnectorFactory = (row: ConnectorRow) => Connector;

/**
 * The built-in connectors plus those configured in the database, kept in memory so that a run
 * resolves its connector without a query. `reload` re-reads the table: after a change here, and
 * when another instance announces one.
 */
export class DatabaseConnectorRegistry implements ConnectorRegistry {
  #configured = new Map<string, ConnectorEntry>();
  #loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly builtIns: Connector[],
    private readonly kinds: Record<ConnectorRow['kind'], ConnectorFactory>,
  ) {}

  reload(): Promise<void> {
    this.#loading = this.#loading.catch(() => {}).then(async () => {
      const rows = await listConnectorRows(this.sql);
      this.#configured = new Map(rows.map((row) => [row.id, { connector: this.kinds[row.kind](row), row }]));
    });
    return this.#loading;
  }

  get(id: string): Connector | undefined {
    return this.builtIns.find((c) => c.id === id) ?? this.#configured.get(id)?.connector;
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

import type { Sql } from '../db/client.ts';
import type { ConnectorKind, ConnectorRow, LogLevel } from '../db/rows.ts';

/** What a connector call (and a server operation) receives. */
export interface CallContext {
  signal: AbortSignal;
  /** Writes a log entry tied to the job and run. */
  log(level: LogLevel, message: string, details?: unknown): Promise<void>;
  jobId: string;
  runId: string;
  scheduledAt: Date;
  /** A small pool of its own, so a hung operation cannot starve the scheduler. */
  sql: Sql;
}

/** A server operation: what a module in SERVER_OPERATIONS_DIR exports by name, and the built-ins. */
export type Operation = (ctx: CallContext) => Promise<unknown>;

/**
 * Thrown by a connector whose own deadline passed (e.g. an HTTP connector's timeoutSeconds):
 * the run ends TIMED_OUT rather than FAILED.
 */
export class CallTimeoutError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CallTimeoutError';
  }
}

/** A named call target. Adding a kind means one module implementing this; no scheduler code. */
export interface Connector {
  readonly id: string;
  readonly kind: ConnectorKind;
  readonly builtIn: boolean;
  /** Calls `method`; rejects on failure. The result is ignored. */
  call(method: string, ctx: CallContext): Promise<unknown>;
  /** Whether `method` is known now; undefined when the connector cannot tell in advance. */
  hasMethod(method: string): boolean | undefined;
  /** The known method names, for connectors that can list them. */
  methods(): string[] | null;
  /**
   * Releases what the connector holds between calls (kept-alive connections), once it has been
   * replaced or removed; calls still in flight finish.
   */
  close?(): void;
}

export interface ConnectorEntry {
  connector: Connector;
  /** The stored configuration, for connectors configured through the API. */
  row: ConnectorRow | null;
}

export interface ConnectorRegistry {
  get(id: string): Connector | undefined;
  list(): Connector[];
  entries(): ConnectorEntry[];
}

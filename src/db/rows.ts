/**
 * What the tables hold: the values of their enum columns, each spelled once here (the drizzle
 * schema, the GraphQL enums and the logic import the tuples), and the rows as queries return
 * them, derived from the drizzle schema.
 */
import type { connectors, jobRuns, jobs, logEntries } from './schema.ts';

export const RUN_STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABANDONED', 'SKIPPED', 'CANCELLED'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
/** What a claimed due time becomes: a run in progress, or SKIPPED while the previous run still runs. */
export type ClaimStatus = Extract<RunStatus, 'RUNNING' | 'SKIPPED'>;
/** The statuses a run ends with (a SKIPPED run never started, so it does not end). */
export type EndStatus = Exclude<RunStatus, ClaimStatus>;

export const RUN_TRIGGERS = ['SCHEDULE', 'MANUAL', 'RETRY'] as const;
export type RunTrigger = (typeof RUN_TRIGGERS)[number];

/** What a due time does while a run of its job is in progress (SPEC §3b). */
export const OVERLAP_POLICIES = ['SKIP', 'QUEUE_ONE', 'ALLOW'] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

/** What due times claimed late (coalesced) become (SPEC §3b). */
export const MISFIRE_POLICIES = ['RUN_ONCE', 'SKIP'] as const;
export type MisfirePolicy = (typeof MISFIRE_POLICIES)[number];

export const CIRCUIT_STATES = ['CLOSED', 'OPEN', 'HALF_OPEN'] as const;
export type CircuitState = (typeof CIRCUIT_STATES)[number];

/** In increasing severity: `levelRank` and `minLevel` filters rely on the order. */
export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Kinds of connector configured through the API, stored in the connectors table. */
export const STORED_CONNECTOR_KINDS = ['HTTP'] as const;
/** Every kind of connector: SERVER_OPERATIONS is built in and never stored. */
export const CONNECTOR_KINDS = ['SERVER_OPERATIONS', ...STORED_CONNECTOR_KINDS] as const;
export type ConnectorKind = (typeof CONNECTOR_KINDS)[number];

export const AUTH_SCHEMES = ['BEARER', 'BASIC'] as const;
export type AuthScheme = (typeof AUTH_SCHEMES)[number];

/**
 * One header a connector sends with each call: the jsonb `headers` column holds a list of them.
 * A type, not an interface, so that it is assignable to postgres.js's JSON parameter type.
 */
export type ConnectorHeader = { name: string; value: string };

// Queries go through postgres.js, not drizzle: with its camelCase transform the columns come back
// under the schema's property names, but int8 and bigserial values come back as strings (they may
// exceed 2^53), where drizzle's `mode: 'number'` infers number. Those columns are overridden here.

export interface JobRow extends Omit<typeof jobs.$inferSelect, 'retryOf'> {
  /** int8: a string from postgres.js. */
  retryOf: string | null;
}

export interface RunRow extends Omit<typeof jobRuns.$inferSelect, 'id' | 'retryOf'> {
  /** bigserial: a string from postgres.js. */
  id: string;
  /** int8: a string from postgres.js. */
  retryOf: string | null;
}

export interface LogRow extends Omit<typeof logEntries.$inferSelect, 'id' | 'runId'> {
  /** bigserial: a string from postgres.js. */
  id: string;
  /** int8: a string from postgres.js. */
  runId: string | null;
}

export interface ConnectorRow extends Omit<typeof connectors.$inferSelect, 'circuitProbeRunId'> {
  /** int8: a string from postgres.js. */
  circuitProbeRunId: string | null;
}

/** Levels in increasing severity, for `minLevel` filters. */
export const levelRank = (level: LogLevel): number => LOG_LEVELS.indexOf(level);

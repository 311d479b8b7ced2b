/** Rows as queries return them (postgres.js with camelCase transform; int8 ids as strings). */

export const RUN_STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABANDONED', 'SKIPPED', 'CANCELLED'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];
export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type RunTrigger = 'SCHEDULE' | 'MANUAL';

export interface JobRow {
  id: string;
  name: string;
  connectorId: string;
  method: string;
  periodSeconds: number;
  enabled: boolean;
  pausedNote: string | null;
  timeoutSeconds: number | null;
  anchorAt: Date;
  nextDueAt: Date;
  createdAt: Date;
  updatedAt: Date;
}

export interface RunRow {
  id: string;
  jobId: string;
  trigger: RunTrigger;
  scheduledAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  status: RunStatus;
  error: string | null;
  instance: string | null;
  missed: number;
  leaseToken: string | null;
  leaseExpiresAt: Date | null;
  cancelRequestedAt: Date | null;
}

export interface LogRow {
  id: string;
  at: Date;
  level: LogLevel;
  message: string;
  jobId: string | null;
  runId: string | null;
  details: unknown;
}

export interface ConnectorRow {
  id: string;
  kind: 'HTTP';
  baseUrl: string;
  headers: { name: string; value: string }[];
  authScheme: 'BEARER' | 'BASIC' | null;
  secret: string | null;
  timeoutSeconds: number | null;
  createdAt: Date;
  updatedAt: Date;
}

/** Levels in increasing severity, for `minLevel` filters. */
export const levelRank = (level: LogLevel): number => LOG_LEVELS.indexOf(level);

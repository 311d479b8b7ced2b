import type { Job } from '../../web/src/model.ts';

/** A job as the dashboard's documents return it: a 5-second no-op, enabled, unless `overrides` say otherwise. */
export const webJob = (id: string, overrides: Partial<Job> = {}): Job => ({
  id,
  name: `Job ${id}`,
  externalCall: 'ServerOperationConnector:Noop',
  connectorId: 'ServerOperationConnector',
  period: '0:00:05',
  cron: null,
  timeZone: null,
  enabled: true,
  pausedNote: null,
  nextRunAt: '2026-01-01T00:00:05.000Z',
  consecutiveFailures: 0,
  ...overrides,
});

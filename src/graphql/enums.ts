import { LOG_LEVELS, RUN_STATUSES } from '../db/rows.ts';
import { builder } from './builder.ts';

export const RunStatusEnum = builder.enumType('RunStatus', { values: RUN_STATUSES });
export const RunTriggerEnum = builder.enumType('RunTrigger', { values: ['SCHEDULE', 'MANUAL'] as const });
export const LogLevelEnum = builder.enumType('LogLevel', { values: LOG_LEVELS });
export const JobEventKindEnum = builder.enumType('JobEventKind', {
  values: ['RUN_STARTED', 'RUN_SUCCEEDED', 'RUN_FAILED', 'RUN_SKIPPED', 'JOB_CREATED', 'JOB_UPDATED', 'JOB_DELETED'] as const,
});
export const ConnectorKindEnum = builder.enumType('ConnectorKind', { values: ['SERVER_OPERATIONS', 'HTTP'] as const });
export const AuthSchemeEnum = builder.enumType('AuthScheme', { values: ['BEARER', 'BASIC'] as const });

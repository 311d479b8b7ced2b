import { AUTH_SCHEMES, CONNECTOR_KINDS, LOG_LEVELS, RUN_STATUSES, RUN_TRIGGERS } from '../db/rows.ts';
import { builder } from './builder.ts';

export const RunStatusEnum = builder.enumType('RunStatus', { values: RUN_STATUSES });
export const RunTriggerEnum = builder.enumType('RunTrigger', { values: RUN_TRIGGERS });
export const LogLevelEnum = builder.enumType('LogLevel', { values: LOG_LEVELS });
// Spelled only here: the kinds of event exist only in the GraphQL API (the bus has its own topics).
export const JobEventKindEnum = builder.enumType('JobEventKind', {
  values: ['RUN_STARTED', 'RUN_SUCCEEDED', 'RUN_FAILED', 'RUN_SKIPPED', 'JOB_CREATED', 'JOB_UPDATED', 'JOB_DELETED'] as const,
});
export const ConnectorKindEnum = builder.enumType('ConnectorKind', { values: CONNECTOR_KINDS });
export const AuthSchemeEnum = builder.enumType('AuthScheme', { values: AUTH_SCHEMES });

import SchemaBuilder from '@pothos/core';
import ScopeAuthPlugin from '@pothos/plugin-scope-auth';
import { hasRole, type Principal } from '../auth/tokens.ts';
import type { ConnectorService } from '../connectors/connector-service.ts';
import type { ConnectorRegistry } from '../connectors/types.ts';
import type { Sql } from '../db/client.ts';
import { DomainError } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import type { JobService } from '../jobs/job-service.ts';
import type { Loaders } from './loaders.ts';

/** A fresh object per request; the services inside are shared. */
export interface Context {
  /** The API's own pool (instance.ts): reads never wait for, nor take, the scheduler's connections. */
  sql: Sql;
  /** Batched per-row lookups (loaders.ts), shared by the app's requests. */
  loaders: Loaders;
  jobs: JobService;
  connectors: ConnectorService;
  registry: ConnectorRegistry;
  bus: EventBus;
  /** Who asks (SPEC §8): a token's name and role, or `local` when auth is off. */
  principal: Principal;
}

export interface Types {
  Context: Context;
  DefaultFieldNullability: false;
  /**
   * The roles, each a scope a field may require (SPEC §8's matrix): Query and Subscription need
   * viewer (jobs.ts, subscriptions.ts: on the root types, so a field added later is covered),
   * Mutation operator (jobs.ts), the connector mutations admin (connectors.ts).
   */
  AuthScopes: { viewer: boolean; operator: boolean; admin: boolean };
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
}

export const builder = new SchemaBuilder<Types>({
  defaultFieldNullability: false,
  plugins: [ScopeAuthPlugin],
  scopeAuth: {
    // Subscriptions are checked when they start, not at each event.
    authorizeOnSubscribe: true,
    authScopes: (ctx) => ({
      viewer: hasRole(ctx.principal, 'viewer'),
      operator: hasRole(ctx.principal, 'operator'),
      admin: hasRole(ctx.principal, 'admin'),
    }),
    // A role too low: FORBIDDEN for that field; its resolver never runs, so nothing changes.
    unauthorizedError: (_parent, ctx, info) =>
      new DomainError(
        'FORBIDDEN',
        `The ${ctx.principal.role} role of "${ctx.principal.name}" may not use ${info.parentType.name}.${info.fieldName}.`,
      ),
  },
});

export type BuilderTypes = typeof builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

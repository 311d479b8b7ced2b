import SchemaBuilder from '@pothos/core';
import type { ConnectorService } from '../connectors/connector-service.ts';
import type { ConnectorRegistry } from '../connectors/types.ts';
import type { Sql } from '../db/client.ts';
import type { EventBus } from '../events/bus.ts';
import type { JobService } from '../jobs/job-service.ts';

/** A fresh object per request; the services inside are shared. */
export interface Context {
  sql: Sql;
  jobs: JobService;
  connectors: ConnectorService;
  registry: ConnectorRegistry;
  bus: EventBus;
}

export interface Types {
  Context: Context;
  DefaultFieldNullability: false;
  Scalars: {
    ID: { Input: string; Output: string };
    DateTime: { Input: Date; Output: Date };
    JSON: { Input: unknown; Output: unknown };
  };
}

export const builder = new SchemaBuilder<Types>({ defaultFieldNullability: false });

export type BuilderTypes = typeof builder extends PothosSchemaTypes.SchemaBuilder<infer T> ? T : never;

import type { Connector } from '../connectors/types.ts';
import { builder } from './builder.ts';
import { AuthSchemeEnum, ConnectorKindEnum } from './enums.ts';

const Header = builder.objectRef<{ name: string; value: string }>('Header').implement({
  fields: (t) => ({ name: t.exposeString('name'), value: t.exposeString('value') }),
});

const ConnectorRef = builder.objectRef<Connector>('Connector').implement({
  description: 'A named call target. Secrets are write-only: no field returns them.',
  fields: (t) => ({
    id: t.exposeID('id'),
    kind: t.field({ type: ConnectorKindEnum, resolve: (c) => c.kind }),
    builtIn: t.exposeBoolean('builtIn'),
    baseUrl: t.string({ nullable: true, resolve: () => null }),
    headers: t.field({ type: [Header], resolve: () => [] }),
    authScheme: t.field({ type: AuthSchemeEnum, nullable: true, resolve: () => null }),
    hasSecret: t.boolean({ resolve: () => false }),
    timeoutSeconds: t.int({ nullable: true, resolve: () => null }),
    operations: t.stringList({
      nullable: true,
      description: 'The known operation names, for ServerOperationConnector.',
      resolve: (c) => c.methods(),
    }),
    createdAt: t.field({ type: 'DateTime', nullable: true, resolve: () => null }),
    updatedAt: t.field({ type: 'DateTime', nullable: true, resolve: () => null }),
  }),
});

builder.queryField('connectors', (t) =>
  t.field({ type: [ConnectorRef], resolve: (_, __, ctx) => ctx.registry.list() }),
);

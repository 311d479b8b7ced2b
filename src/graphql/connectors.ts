import { hasRole } from '../auth/tokens.ts';
import type { ConnectorEntry } from '../connectors/types.ts';
import { builder } from './builder.ts';
import { AuthSchemeEnum, ConnectorKindEnum } from './enums.ts';

/** What a non-admin sees for a header's value: header values often hold keys (SPEC §8). */
export const HIDDEN_HEADER_VALUE = '(hidden: admins only)';

const Header = builder.objectRef<{ name: string; value: string }>('Header').implement({
  fields: (t) => ({
    name: t.exposeString('name'),
    value: t.string({
      description: `Shown to admins only; others get "${HIDDEN_HEADER_VALUE}".`,
      resolve: (header, _, ctx) => (hasRole(ctx.principal, 'admin') ? header.value : HIDDEN_HEADER_VALUE),
    }),
  }),
});

const ConnectorRef = builder.objectRef<ConnectorEntry>('Connector').implement({
  description: 'A named call target. Secrets are write-only: no field returns them.',
  fields: (t) => ({
    id: t.id({ resolve: (e) => e.connector.id }),
    kind: t.field({ type: ConnectorKindEnum, resolve: (e) => e.connector.kind }),
    builtIn: t.boolean({ resolve: (e) => e.connector.builtIn }),
    baseUrl: t.string({ nullable: true, resolve: (e) => e.row?.baseUrl ?? null }),
    headers: t.field({ type: [Header], resolve: (e) => e.row?.headers ?? [] }),
    authScheme: t.field({ type: AuthSchemeEnum, nullable: true, resolve: (e) => e.row?.authScheme ?? null }),
    hasSecret: t.boolean({ resolve: (e) => Boolean(e.row?.secret) }),
    timeoutSeconds: t.int({ nullable: true, resolve: (e) => e.row?.timeoutSeconds ?? null }),
    operations: t.stringList({
      nullable: true,
      description: 'The known operation names, for ServerOperationConnector.',
      resolve: (e) => e.connector.methods(),
    }),
    createdAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => e.row?.createdAt ?? null }),
    updatedAt: t.field({ type: 'DateTime', nullable: true, resolve: (e) => e.row?.updatedAt ?? null }),
  }),
});

const HeaderInput = builder.inputType('HeaderInput', {
  fields: (t) => ({ name: t.string({ required: true }), value: t.string({ required: true }) }),
});

const CreateConnectorInput = builder.inputType('CreateConnectorInput', {
  description: 'Only HTTP connectors can be created. The secret is write-only.',
  fields: (t) => ({
    id: t.id({ required: true }),
    kind: t.field({ type: ConnectorKindEnum, required: true, defaultValue: 'HTTP' }),
    baseUrl: t.string({ required: true }),
    headers: t.field({ type: [HeaderInput] }),
    authScheme: t.field({ type: AuthSchemeEnum }),
    secret: t.string({ description: 'BEARER: the token; BASIC: user:password. Never returned.' }),
    timeoutSeconds: t.int(),
  }),
});

const UpdateConnectorInput = builder.inputType('UpdateConnectorInput', {
  fields: (t) => ({
    baseUrl: t.string(),
    headers: t.field({ type: [HeaderInput] }),
    authScheme: t.field({ type: AuthSchemeEnum, description: 'null removes authentication and the secret.' }),
    secret: t.string(),
    timeoutSeconds: t.int(),
  }),
});

/** The entry the API shows for a connector just written. */
function entryOf(id: string, entries: ConnectorEntry[]): ConnectorEntry {
  const entry = entries.find((e) => e.connector.id === id);
  if (!entry) throw new Error(`connector ${id} is missing from the registry after it was written`);
  return entry;
}

builder.queryField('connectors', (t) => t.field({ type: [ConnectorRef], resolve: (_, __, ctx) => ctx.registry.entries() }));

builder.mutationFields((t) => ({
  createConnector: t.field({
    type: ConnectorRef,
    authScopes: { admin: true },
    args: { input: t.arg({ type: CreateConnectorInput, required: true }) },
    resolve: async (_, { input }, ctx) => entryOf((await ctx.connectors.create(input, ctx.principal.name)).id, ctx.registry.entries()),
  }),
  updateConnector: t.field({
    type: ConnectorRef,
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateConnectorInput, required: true }) },
    resolve: async (_, { id, input }, ctx) =>
      entryOf((await ctx.connectors.update(id, input, ctx.principal.name)).id, ctx.registry.entries()),
  }),
  deleteConnector: t.field({
    type: 'ID',
    description: 'CONFLICT while jobs use the connector, unless force.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }), force: t.arg.boolean({ defaultValue: false }) },
    resolve: (_, { id, force }, ctx) => ctx.connectors.delete(id, force ?? false, ctx.principal.name),
  }),
}));

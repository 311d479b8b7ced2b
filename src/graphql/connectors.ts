import { hasRole } from '../auth/tokens.ts';
import { type Circuit, circuitOf } from '../connectors/circuit.ts';
import type { ConnectorEntry } from '../connectors/types.ts';
import { listConnectorRows } from '../db/connectors.ts';
import { CIRCUIT_STATES, type ConnectorRow } from '../db/rows.ts';
import type { TopicEvent } from '../events/topics.ts';
import { builder } from './builder.ts';
import { AuthSchemeEnum, ConnectorKindEnum } from './enums.ts';

const CircuitStateEnum = builder.enumType('CircuitState', { values: CIRCUIT_STATES });
// Spelled only here: the kinds of connector event exist only in the API (the bus has its own topics).
const ConnectorEventKindEnum = builder.enumType('ConnectorEventKind', { values: ['CIRCUIT_OPENED', 'CIRCUIT_CLOSED'] as const });

const CircuitRef = builder.objectRef<Circuit>('Circuit').implement({
  description:
    "A connector's circuit breaker: OPEN after breakerFailures consecutive failed calls (its jobs' runs are then SKIPPED but for one probe per breakerProbeSeconds), HALF_OPEN while the probe is in flight, CLOSED again on the first successful call.",
  fields: (t) => ({
    state: t.field({ type: CircuitStateEnum, resolve: (c) => c.state }),
    failures: t.int({ description: 'Consecutive failed calls (FAILED or TIMED_OUT), across all its jobs.', resolve: (c) => c.failures }),
    openedAt: t.field({ type: 'DateTime', nullable: true, resolve: (c) => c.openedAt }),
    nextProbeAt: t.field({ type: 'DateTime', nullable: true, resolve: (c) => c.nextProbeAt }),
  }),
});

/** The circuit of a stored row, null when its breaker is off. */
const circuitOfRow = (row: ConnectorRow | null): Circuit | null => (row && row.breakerFailures !== null ? circuitOf(row) : null);

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
    breakerFailures: t.int({
      nullable: true,
      description: 'Consecutive failed calls that open its circuit; null: no breaker.',
      resolve: (e) => e.row?.breakerFailures ?? null,
    }),
    breakerProbeSeconds: t.int({
      nullable: true,
      description: 'While its circuit is open, one probe call per this many seconds (null for a built-in connector).',
      resolve: (e) => e.row?.breakerProbeSeconds ?? null,
    }),
    maxConcurrent: t.int({
      nullable: true,
      description: 'At most this many calls at once across all instances; null: unlimited.',
      resolve: (e) => e.row?.maxConcurrent ?? null,
    }),
    circuit: t.field({
      type: CircuitRef,
      nullable: true,
      description: 'Null when the breaker is off.',
      resolve: (e) => circuitOfRow(e.row),
    }),
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
    breakerFailures: t.int({ description: 'Consecutive failed calls that open the circuit (1–1000); null: no breaker.' }),
    breakerProbeSeconds: t.int({
      defaultValue: 30,
      description: 'While the circuit is open, one probe call per this many seconds (1–86400).',
    }),
    maxConcurrent: t.int({ description: 'At most this many calls at once across all instances (1–1000); null: unlimited.' }),
  }),
});

const UpdateConnectorInput = builder.inputType('UpdateConnectorInput', {
  fields: (t) => ({
    baseUrl: t.string(),
    headers: t.field({ type: [HeaderInput] }),
    authScheme: t.field({ type: AuthSchemeEnum, description: 'null removes authentication and the secret.' }),
    secret: t.string(),
    timeoutSeconds: t.int(),
    breakerFailures: t.int({ description: 'null turns the breaker off (an open circuit closes).' }),
    breakerProbeSeconds: t.int({ description: 'null keeps the interval.' }),
    maxConcurrent: t.int({ description: 'null lifts the limit.' }),
  }),
});

/** The entry the API shows for a connector just written: its row as written. */
function entryOf(row: ConnectorRow, entries: ConnectorEntry[]): ConnectorEntry {
  const entry = entries.find((e) => e.connector.id === row.id);
  if (!entry) throw new Error(`connector ${row.id} is missing from the registry after it was written`);
  return { ...entry, row };
}

builder.queryField('connectors', (t) =>
  t.field({
    type: [ConnectorRef],
    resolve: async (_, __, ctx) => {
      // Circuits change with every failed call, on any instance: the rows are read as they stand.
      const rows = new Map((await listConnectorRows(ctx.sql)).map((row) => [row.id, row]));
      return ctx.registry.entries().map((e) => (e.row ? { ...e, row: rows.get(e.row.id) ?? e.row } : e));
    },
  }),
);

builder.mutationFields((t) => ({
  createConnector: t.field({
    type: ConnectorRef,
    authScopes: { admin: true },
    args: { input: t.arg({ type: CreateConnectorInput, required: true }) },
    resolve: async (_, { input }, ctx) => entryOf(await ctx.connectors.create(input, ctx.principal.name), ctx.registry.entries()),
  }),
  updateConnector: t.field({
    type: ConnectorRef,
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }), input: t.arg({ type: UpdateConnectorInput, required: true }) },
    resolve: async (_, { id, input }, ctx) => entryOf(await ctx.connectors.update(id, input, ctx.principal.name), ctx.registry.entries()),
  }),
  deleteConnector: t.field({
    type: 'ID',
    description: 'CONFLICT while jobs use the connector, unless force.',
    authScopes: { admin: true },
    args: { id: t.arg.id({ required: true }), force: t.arg.boolean({ defaultValue: false }) },
    resolve: (_, { id, force }, ctx) => ctx.connectors.delete(id, force ?? false, ctx.principal.name),
  }),
}));

interface ConnectorEvent {
  kind: (typeof ConnectorEventKindEnum)['$inferType'];
  at: Date;
  connectorId: string;
  circuit: Circuit | null;
}

/** The ConnectorEvent of a bus event, or undefined when it is not one. */
function toConnectorEvent(event: TopicEvent): ConnectorEvent | undefined {
  if (event.topic === 'circuit:opened') return { kind: 'CIRCUIT_OPENED', ...event.payload };
  if (event.topic === 'circuit:closed') return { kind: 'CIRCUIT_CLOSED', ...event.payload };
  return undefined;
}

const ConnectorEventRef = builder.objectRef<ConnectorEvent>('ConnectorEvent').implement({
  description: "A connector's circuit opened or closed, whichever instance saw it happen.",
  fields: (t) => ({
    kind: t.field({ type: ConnectorEventKindEnum, resolve: (e) => e.kind }),
    at: t.field({ type: 'DateTime', resolve: (e) => e.at }),
    connectorId: t.id({ resolve: (e) => e.connectorId }),
    circuit: t.field({ type: CircuitRef, nullable: true, description: 'Null when the breaker was turned off.', resolve: (e) => e.circuit }),
  }),
});

builder.subscriptionField('connectorEvents', (t) =>
  t.field({
    type: ConnectorEventRef,
    description: "Connectors' circuits opening and closing, of one connector or of all when connectorId is omitted.",
    args: { connectorId: t.arg.id() },
    subscribe: (_, args, ctx) =>
      ctx.bus.subscribe((event) => {
        const connectorEvent = toConnectorEvent(event);
        return connectorEvent && (args.connectorId == null || connectorEvent.connectorId === args.connectorId) ? connectorEvent : undefined;
      }),
    resolve: (event) => event,
  }),
);

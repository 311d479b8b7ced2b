// The GraphQL half of the fuzz test (SPEC §8): generated documents with their variables, read off
// the schema the service publishes (schema.graphql), so that every argument of every query,
// mutation and subscription gets bad values, fields added later included. A mutation is only ever
// generated in a form that must be refused, so the database must come out unchanged:
//  - a type poison (a wrong literal, a wrong variable type or value, an unknown or missing
//    argument, an undeclared variable) makes GraphQL refuse the whole document before it runs;
//  - a mutation on one id (pauseJob, deleteConnector, ...) names an id that does not exist;
//  - createJob, createConnector, applyJobs, and updateJob, updateConnector, pauseJob on the
//    fixtures carry one value the service refuses (a period of 60 minutes, an unknown time zone,
//    a list with one bad job, an ftp:// base URL, ...).
// Nested fields get bad arguments too (Job.nextRuns(count), Job.runs(first, after), ...): they
// run in queries, so their refusals must be coded as well.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import {
  buildSchema,
  getNamedType,
  GraphQLNonNull,
  isLeafType,
  isObjectType,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLObjectType,
  type GraphQLOutputType,
  type GraphQLSchema,
} from 'graphql';
import { EnumValue, json, literal, LONG, setPath, strings, typed, type Value, wrongJson, wrongLiteral } from './fuzz-values.ts';
import { repoRoot } from './process.ts';

/** What the database holds before the fuzzing starts: ids the mutations must not reach. */
export interface Fixtures {
  jobId: string;
  connectorId: string;
  runId: string;
}

export interface GeneratedOperation {
  query: string;
  variables?: Record<string, unknown>;
  operationName?: string;
  /** A subscription document: never sent in a form that would open a stream. */
  subscription: boolean;
  /** What kind of case this is, for the report. */
  kind: string;
}

export const loadPublishedSchema = (): GraphQLSchema => buildSchema(fs.readFileSync(path.join(repoRoot, 'schema.graphql'), 'utf8'));

type Gen = fc.GeneratorValue;
type Field = GraphQLField<unknown, unknown>;
type Root = 'query' | 'mutation' | 'subscription';

/** Mutations on one id: with an id that does not exist, any other argument is safe. */
const BY_ID = new Set(['pauseJob', 'resumeJob', 'deleteJob', 'runJobNow', 'cancelRun', 'updateJob', 'updateConnector', 'deleteConnector']);

/** Values the service refuses, by mutation and input path; `target` is the fixture the mutation is aimed at. */
function refusals(fixtures: Fixtures): Record<string, { target?: Record<string, string>; values: Record<string, Value[]> }> {
  const period = ['0:60:0', '0:0:60', '', '1:2', 'abc', '0:0:0', '-1:0:0', '99999999:0:0'];
  const timeout = [0, -1, 86_401, 2 ** 31 - 1];
  const name = ['', '   ', LONG(201)];
  const call = ['NoColon', '', ':Method', 'Connector:', ' : ', `X:${LONG(1001)}`, '1bad:x'];
  const cron = ['', '* * *', '61 * * * *', '* * * * * * *', '@never', 'L L L L L', `${'1,'.repeat(200)}1 * * * *`];
  const timeZone = ['Mars/Olympus_Mons', '+02:00', 'UTC+3', '', 'Europe/Нигде', LONG(300)];
  const retry: Value[] = [
    { maxAttempts: 0 },
    { maxAttempts: 11 },
    { backoffSeconds: -1 },
    { backoffSeconds: 86_401 },
    { backoffFactor: 0.5 },
    { backoffFactor: 1e308 },
    { maxBackoffSeconds: 0 },
  ];
  const autoPause = [0, -1, 1001, 2 ** 31 - 1];
  /** A list job that is fine but for what `bad` says. */
  const listJob = (bad: Record<string, Value>): Value => ({
    id: 'fuzz-listed',
    name: 'Listed',
    externalCall: 'ServerOperationConnector:Noop',
    period: '1:0:0',
    ...bad,
  });
  const fine = listJob({});
  const lists: Value[] = [
    [listJob({ period: '0:60:0' })],
    [fine, listJob({ cron: '* * * * *' })],
    [fine, fine],
    [listJob({ period: null })],
    [listJob({ period: null, cron: '* * * * *', timeZone: 'Mars/Olympus_Mons' })],
    [fine, listJob({ id: 'b', retry: { maxAttempts: 0 } }), listJob({ id: 'c' })],
    [listJob({ id: fixtures.jobId, name: '' })],
    [listJob({ id: 'd', autoPauseAfterFailures: 0 })],
    [listJob({ id: 'e', externalCall: 'NoColon' })],
  ];
  const baseUrl = ['', 'ftp://x', 'not a url', 'http://user:pw@host', 'http://host/?q=1', 'http://host/#f', `http://${LONG(2001)}`];
  const headers: Value[] = [
    [{ name: 'bad name', value: 'v' }],
    [{ name: 'Authorization', value: 'x' }],
    [{ name: 'X-A', value: 'я' }],
    [{ name: 'X-A', value: '\u0001' }],
    Array.from({ length: 51 }, (_, i) => ({ name: `X-${i}`, value: 'v' })),
  ];
  return {
    createJob: {
      values: {
        'input.id': ['', 'has space', LONG(129), 'a/b', '\u0000'],
        'input.period': period,
        'input.timeoutSeconds': timeout,
        'input.name': name,
        'input.externalCall': call,
        'input.cron': cron,
        'input.timeZone': timeZone,
        'input.retry': retry,
        'input.autoPauseAfterFailures': autoPause,
      },
    },
    updateJob: {
      target: { id: fixtures.jobId },
      values: {
        'input.period': period,
        'input.timeoutSeconds': timeout,
        'input.name': name,
        'input.externalCall': call,
        'input.cron': cron,
        'input.timeZone': timeZone,
        'input.retry': retry,
        'input.autoPauseAfterFailures': autoPause,
      },
    },
    applyJobs: { values: { 'input.jobs': lists } },
    pauseJob: { target: { id: fixtures.jobId }, values: { note: [LONG(1001), LONG(5000, 'я')] } },
    createConnector: {
      values: {
        'input.id': ['', '1abc', 'has space', LONG(129), 'ServerOperationConnector'],
        'input.baseUrl': baseUrl,
        'input.kind': [new EnumValue('SERVER_OPERATIONS')],
        'input.headers': headers,
        'input.timeoutSeconds': timeout,
      },
    },
    updateConnector: {
      target: { id: fixtures.connectorId },
      values: { 'input.baseUrl': baseUrl, 'input.headers': headers, 'input.timeoutSeconds': timeout },
    },
  };
}

/** Arguments for a nested field: a few of its (optional) arguments, with values of their type the service may refuse. */
function nestedArguments(g: Gen, field: Field): string {
  if (field.args.length === 0 || !g(fc.boolean)) return '';
  const given = field.args.filter(() => g(fc.boolean));
  if (given.length === 0) return '';
  return `(${given.map((arg) => `${arg.name}: ${literal(g(() => typed(arg.type, strings([]))))}`).join(', ')})`;
}

/** A selection set for `type`: a few leaf fields and sometimes one nested object (no required arguments), with arguments. */
function selection(g: Gen, type: GraphQLOutputType, depth = 0): string {
  const named = getNamedType(type);
  if (isLeafType(named) || !isObjectType(named)) return '';
  const fields = Object.values((named as GraphQLObjectType).getFields()).filter((f) =>
    f.args.every((a) => !(a.type instanceof GraphQLNonNull)),
  );
  const leaves = fields.filter((f) => isLeafType(getNamedType(f.type))).map((f) => f.name);
  const objects = fields.filter((f) => !isLeafType(getNamedType(f.type)));
  const pool = leaves.length > 0 ? leaves : ['__typename'];
  const names = g(() => fc.subarray(pool, { minLength: 1, maxLength: Math.min(4, pool.length) }));
  if (depth < 2 && objects.length > 0 && g(fc.boolean)) {
    const child = g(() => fc.constantFrom(...objects));
    names.push(`${child.name}${nestedArguments(g, child)} ${selection(g, child.type, depth + 1)}`);
  }
  return `{ ${names.join(' ')} }`;
}

interface Call {
  text: string;
  definitions: string[];
  variables: Record<string, unknown>;
}

type Safety = 'none' | 'type' | 'missing-id' | 'refusal';

/** How a mutation is kept from changing anything; queries and subscriptions need nothing. */
function safetyFor(g: Gen, root: Root, field: Field, fixtures: Fixtures): Safety {
  if (root !== 'mutation') return g(() => fc.constantFrom<Safety>('none', 'none', 'type'));
  const options: Safety[] = ['type'];
  if (BY_ID.has(field.name) && field.args.some((a) => a.name === 'id')) options.push('missing-id', 'missing-id');
  if (refusals(fixtures)[field.name]) options.push('refusal', 'refusal');
  return g(() => fc.constantFrom(...options));
}

/** One root field with generated arguments, made safe as `safety` says. */
function fieldCall(g: Gen, ctx: DocumentContext, root: Root, field: Field, prefix: string): Call {
  const { fixtures } = ctx;
  const safety = safetyFor(g, root, field, fixtures);
  const avoid = root === 'mutation' ? [fixtures.jobId, fixtures.connectorId] : [];
  const text = strings(avoid);
  const values: Record<string, Value> = {};
  for (const arg of field.args) {
    const required = arg.type instanceof GraphQLNonNull && arg.defaultValue === undefined;
    if (required || g(fc.boolean)) values[arg.name] = g(() => typed(arg.type, text));
  }
  if (safety === 'missing-id') values['id'] = g(() => text);
  if (safety === 'refusal') {
    const refusal = refusals(fixtures)[field.name]!;
    for (const [name, id] of Object.entries(refusal.target ?? {})) values[name] = id;
    const pathName = g(() => fc.constantFrom(...Object.keys(refusal.values)));
    setPath(
      values,
      pathName,
      g(() => fc.constantFrom(...refusal.values[pathName]!)),
    );
  }
  const call: Call = { text: '', definitions: [], variables: {} };
  const args: string[] = [];
  const asVariable = (name: string, type: GraphQLInputType | string, value: unknown) => {
    const variable = `${prefix}${name}`;
    call.definitions.push(`$${variable}: ${String(type)}`);
    if (value !== undefined) call.variables[variable] = value;
    args.push(`${name}: $${variable}`);
  };
  const poisoned =
    safety === 'type'
      ? g(() => fc.constantFrom('unknown-arg', 'wrong-literal', 'missing-arg', 'wrong-variable-type', 'wrong-variable-value', 'undeclared'))
      : null;
  const victim = field.args.length > 0 ? field.args[g(fc.nat, field.args.length - 1)]! : null;
  const requiredArgs = field.args.filter((a) => a.type instanceof GraphQLNonNull && a.defaultValue === undefined);
  const missing = poisoned === 'missing-arg' && requiredArgs.length > 0 ? requiredArgs[g(fc.nat, requiredArgs.length - 1)]! : null;
  let poisonDone = false;
  for (const arg of field.args) {
    if (arg === missing) {
      poisonDone = true;
      continue;
    }
    if (arg === victim && poisoned === 'wrong-literal') {
      args.push(`${arg.name}: ${g(() => wrongLiteral(arg.type))}`);
      poisonDone = true;
      continue;
    }
    if (arg === victim && poisoned === 'wrong-variable-type') {
      const wrong = String(getNamedType(arg.type)) === 'Boolean' ? 'String' : String(getNamedType(arg.type)) === 'Int' ? 'Boolean' : 'Int';
      asVariable(arg.name, arg.type instanceof GraphQLNonNull ? `${wrong}!` : wrong, null);
      poisonDone = true;
      continue;
    }
    if (arg === victim && poisoned === 'wrong-variable-value') {
      const value = g(() => wrongJson(arg.type));
      if (value !== undefined || arg.type instanceof GraphQLNonNull) {
        asVariable(arg.name, arg.type, value);
        poisonDone = true;
        continue;
      }
    }
    if (!(arg.name in values)) continue;
    if (g(fc.boolean)) args.push(`${arg.name}: ${literal(values[arg.name]!)}`);
    else asVariable(arg.name, arg.type, json(values[arg.name]!));
  }
  if (poisoned === 'undeclared') args.push(`${field.args[0]?.name ?? 'zzUnknown'}: $undeclared${prefix}`);
  else if (poisoned && !poisonDone) args.push(`zzUnknown: ${literal(g(() => text))}`); // an argument the field does not have
  const alias = g(fc.boolean) ? `${prefix}alias: ` : '';
  call.text = `${alias}${field.name}${args.length > 0 ? `(${args.join(', ')})` : ''} ${selection(g, field.type)}`;
  return call;
}

export interface DocumentContext {
  schema: GraphQLSchema;
  fixtures: Fixtures;
}

function rootFields(ctx: DocumentContext, root: Root): Field[] {
  const type =
    root === 'query' ? ctx.schema.getQueryType() : root === 'mutation' ? ctx.schema.getMutationType() : ctx.schema.getSubscriptionType();
  return type ? Object.values(type.getFields()) : [];
}

/** One to three root fields of one operation type, each with bad arguments. */
function fieldOperation(ctx: DocumentContext): fc.Arbitrary<GeneratedOperation> {
  return fc.gen().map((g) => {
    const root = g(() => fc.constantFrom<Root>('mutation', 'mutation', 'mutation', 'query', 'query', 'subscription'));
    const fields = rootFields(ctx, root);
    const count = root === 'subscription' ? 1 : g(fc.integer, { min: 1, max: 3 });
    const calls = Array.from({ length: count }, (_, i) => fieldCall(g, ctx, root, fields[g(fc.nat, fields.length - 1)]!, `v${i}_`));
    // A field of another root type (a mutation inside a query, ...) is refused as a whole.
    if (g(fc.nat, 9) === 0) {
      const other = g(() => fc.constantFrom<Root>('query', 'mutation', 'subscription'));
      const strays = rootFields(ctx, other);
      if (other !== root && strays.length > 0) calls.push({ text: `${strays[0]!.name} { __typename }`, definitions: [], variables: {} });
    }
    const definitions = calls.flatMap((c) => c.definitions);
    const name = g(fc.boolean) ? ` Fuzz${g(fc.nat, 99)}` : '';
    const head = `${root}${name}${definitions.length > 0 ? `(${definitions.join(', ')})` : ''}`;
    const variables = Object.assign({}, ...calls.map((c) => c.variables)) as Record<string, unknown>;
    return {
      query: `${head} { ${calls.map((c) => c.text).join(' ')} }`,
      variables,
      subscription: root === 'subscription',
      kind: `${root} fields`,
    };
  });
}

/** Deep documents: nested selections, nested list literals, deeply nested variables. */
function deepDocument(): fc.Arbitrary<GeneratedOperation> {
  return fc.oneof(
    fc.integer({ min: 5, max: 1500 }).map((d) => ({
      query: `query { job(id: "fuzz-job") { ${'lastRun { job { '.repeat(d)}id${' } }'.repeat(d)} } }`,
      subscription: false,
      kind: 'deep selection',
    })),
    fc.integer({ min: 5, max: 3000 }).map((d) => ({
      query: `query { jobs(enabled: ${'['.repeat(d)}true${']'.repeat(d)}) { id } }`,
      subscription: false,
      kind: 'deep list literal',
    })),
    fc.integer({ min: 5, max: 3000 }).map((d) => ({
      query: `query($e: Boolean, $j: ID) { jobs(enabled: $e) { id } job(id: $j) { id } }`,
      variables: {
        e: JSON.parse(`${'['.repeat(d)}true${']'.repeat(d)}`) as unknown,
        j: JSON.parse(`${'{"a":'.repeat(d)}1${'}'.repeat(d)}`) as unknown,
      },
      subscription: false,
      kind: 'deep variables',
    })),
  );
}

/** Wide documents: many aliases, repeated fields, directives, variables, operations. */
function wideDocument(): fc.Arbitrary<GeneratedOperation> {
  const n = (max: number) => fc.integer({ min: 10, max });
  const op = (kind: string, query: string): GeneratedOperation => ({ query, subscription: false, kind });
  return fc.oneof(
    n(60).map((k) => op('aliases', `{ ${Array.from({ length: k }, (_, i) => `a${i}: jobs { id }`).join(' ')} }`)),
    n(5000).map((k) => op('aliases', `{ ${Array.from({ length: k }, (_, i) => `a${i}: __typename`).join(' ')} }`)),
    n(5000).map((k) => op('repeated fields', `{ jobs { ${'id '.repeat(k)}} }`)),
    n(1000).map((k) => op('directives', `{ jobs ${'@include(if: true) '.repeat(k)}{ id } }`)),
    n(1000).map((k) => op('variables', `query(${Array.from({ length: k }, (_, i) => `$v${i}: Int`).join(', ')}) { jobs { id } }`)),
    n(500).map((k) => op('operations', Array.from({ length: k }, (_, i) => `query Q${i} { jobs { id } }`).join('\n'))),
    n(200).map((k) =>
      op('mutations', `mutation { ${Array.from({ length: k }, (_, i) => `d${i}: deleteJob(id: "nope-${i}")`).join(' ')} }`),
    ),
  );
}

/** Fragments: cycles, unknown and wrong types, unused, and doubling spreads. */
function fragmentDocument(): fc.Arbitrary<GeneratedOperation> {
  const op = (kind: string, query: string): GeneratedOperation => ({ query, subscription: false, kind });
  return fc.oneof(
    fc.constant(op('fragment cycle', 'query { ...A } fragment A on Query { ...B } fragment B on Query { jobs { id } ...A }')),
    fc.constant(op('fragment self', 'query { ...A } fragment A on Query { ...A }')),
    fc.constant(op('fragment unknown type', 'query { ...A } fragment A on Nope { id }')),
    fc.constant(op('fragment on scalar', 'query { jobs { ...A } } fragment A on String { length }')),
    fc.constant(op('fragment unused', 'query { jobs { id } } fragment A on Query { jobs { id } }')),
    fc.constant(op('fragment unknown', 'query { ...Missing }')),
    fc
      .integer({ min: 2, max: 14 })
      .map((k) =>
        op(
          'fragment doubling',
          `query { ...F${k} } fragment F0 on Query { jobs { id } } ${Array.from({ length: k }, (_, i) => `fragment F${i + 1} on Query { ...F${i} ...F${i} x${i}: __typename }`).join(' ')}`,
        ),
      ),
  );
}

const TOKENS = [
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  ':',
  '=',
  '!',
  '$',
  '@',
  '...',
  '|',
  '&',
  'query',
  'mutation',
  'subscription',
  'fragment',
  'on',
  'jobs',
  'job',
  'id',
  'createJob',
  'input',
  'null',
  'true',
  '1',
  '-0',
  '1e',
  '0x1',
  '01',
  '"',
  '"""',
  '"\\u12"',
  '"\\x"',
  '#c\n',
  'Query',
  '__schema',
  '\u0000',
  '😀',
];

/** Text that does not parse: token soup, cut documents, bad escapes, nothing at all. */
function brokenDocument(ctx: DocumentContext): fc.Arbitrary<GeneratedOperation> {
  const op =
    (kind: string) =>
    (query: string): GeneratedOperation => ({ query, subscription: false, kind });
  return fc.oneof(
    fc
      .array(fc.constantFrom(...TOKENS), { maxLength: 60 })
      .map((t) => t.join(' '))
      .map(op('token soup')),
    fc
      .tuple(fieldOperation(ctx), fc.double({ min: 0, max: 1, noNaN: true }))
      .map(([o, at]) => ({ ...o, query: o.query.slice(0, Math.floor(o.query.length * at)), kind: 'cut document' })),
    fc.string({ unit: 'binary', maxLength: 200 }).map(op('random text')),
    fc
      .constantFrom(
        '',
        ' ',
        '\n\t',
        '# only a comment',
        '\ufeff{ jobs { id } }',
        '{',
        '}',
        '{ jobs { id }',
        'query query { id }',
        '{ "jobs" }',
        '{ jobs(enabled: ) { id } }',
        '{ jobs { id } } }',
      )
      .map(op('malformed')),
    fc
      .constantFrom(
        '{ __schema { queryType { name } } }',
        '{ __type(name: "Job") { fields { name } } }',
        '{ __typename }',
        '{ jobs { __typename } }',
      )
      .map(op('harmless')),
  );
}

/** Several operations and an operationName that does not pick one of them. */
function operationNames(): fc.Arbitrary<GeneratedOperation> {
  return fc.tuple(fc.constantFrom('A', 'B', 'Nope', '', ' A', 'a b', LONG(5000)), fc.constantFrom(0, 1, 2)).map(([name, variant]) => ({
    query: [
      'query A { jobs { id } } query B { connectors { id } }',
      'query { jobs { id } } query { connectors { id } }',
      'query A { jobs { id } } query A { connectors { id } }',
    ][variant]!,
    operationName: variant === 0 && (name === 'A' || name === 'B') ? `${name}x` : name,
    subscription: false,
    kind: 'operation names',
  }));
}

/** Any generated document, weighted towards bad arguments of real fields. */
export function operationArbitrary(ctx: DocumentContext): fc.Arbitrary<GeneratedOperation> {
  return fc.oneof(
    { weight: 12, arbitrary: fieldOperation(ctx) },
    { weight: 2, arbitrary: deepDocument() },
    { weight: 2, arbitrary: wideDocument() },
    { weight: 1, arbitrary: fragmentDocument() },
    { weight: 3, arbitrary: brokenDocument(ctx) },
    { weight: 1, arbitrary: operationNames() },
  );
}

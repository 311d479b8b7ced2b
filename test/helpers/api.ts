import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { Logger } from 'pino';
import type { Sql } from '../../src/db/client.ts';
import { type App, buildApp } from '../../src/http/app.ts';
import { type Harness, silentLog } from './harness.ts';
import { snapshot } from './db.ts';

/** A JSON answer from the wire, indexed freely by the tests. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

export type Health = () => Promise<{ ok: boolean; body: Record<string, unknown> }>;

/**
 * The HTTP app over a harness's services (its bus, job service and connector), closed when the
 * file's tests end. `sql` replaces the context's database handle (to provoke database errors).
 */
export function appFor(h: Harness, options: { sql?: Sql; log?: Logger; health?: Health } = {}): App {
  const app = buildApp({
    context: { sql: options.sql ?? h.sql, jobs: h.jobs, connectors: h.connectors, registry: h.registry, bus: h.bus },
    log: options.log ?? silentLog,
    health: options.health ?? (async () => ({ ok: true, body: { instance: 'test-instance', database: 'up' } })),
  });
  // Closing twice (a test closes it, then the file's end) closes once.
  let closing: Promise<void> | null = null;
  const close = () => (closing ??= app.close());
  after(close);
  return { ...app, close };
}

export interface GraphQLErrorJson {
  message: string;
  path?: (string | number)[];
  extensions?: Record<string, unknown> & { code?: string; field?: string };
  [key: string]: unknown;
}

export interface GraphQLResponse<T = Json> {
  status: number;
  data?: T | null;
  errors?: GraphQLErrorJson[];
  /** The response body as text, to check that nothing leaks. */
  text: string;
}

/** POSTs one GraphQL operation to the app's yoga (no port). */
export async function gql<T = Json>(app: App, query: string, variables?: Record<string, unknown>): Promise<GraphQLResponse<T>> {
  const response = await app.yoga.fetch('http://x/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  const body = JSON.parse(text) as { data?: T | null; errors?: GraphQLErrorJson[] };
  return { status: response.status, data: body.data, errors: body.errors, text };
}

/** Like `gql`, but fails with the errors when the operation did not succeed. */
export async function gqlOk<T = Json>(app: App, query: string, variables?: Record<string, unknown>): Promise<T> {
  const result = await gql<T>(app, query, variables);
  if (result.errors?.length || !result.data) {
    throw new Error(`GraphQL operation failed: ${JSON.stringify(result.errors ?? result.text)}`);
  }
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// The operations of the GraphQL API tests, with their fields, and shortcuts over them.

export const JOB = `id name externalCall connectorId method period periodSeconds enabled pausedNote timeoutSeconds nextRunAt createdAt updatedAt`;
export const RUN = `id jobId trigger scheduledAt startedAt finishedAt durationMs status error instance missed`;
export const CREATE = `mutation($input: CreateJobInput!) { createJob(input: $input) { ${JOB} } }`;
export const UPDATE = `mutation($id: ID!, $input: UpdateJobInput!) { updateJob(id: $id, input: $input) { ${JOB} } }`;
export const PAUSE = `mutation($id: ID!, $note: String) { pauseJob(id: $id, note: $note) { ${JOB} } }`;
export const RESUME = `mutation($id: ID!) { resumeJob(id: $id) { ${JOB} } }`;
export const DELETE = `mutation($id: ID!) { deleteJob(id: $id) }`;
export const RUN_NOW = `mutation($id: ID!) { runJobNow(id: $id) { ${RUN} } }`;
export const CANCEL = `mutation($id: ID!) { cancelRun(id: $id) { ${RUN} } }`;
export const JOBS = `query($enabled: Boolean) { jobs(enabled: $enabled) { id enabled } }`;
export const RUNS = `query($jobId: ID, $status: RunStatus, $first: Int, $after: String) {
  runs(jobId: $jobId, status: $status, first: $first, after: $after) {
    edges { cursor node { ${RUN} job { id } } }
    pageInfo { hasNextPage endCursor }
  } }`;
export const LOG = `query($jobId: ID, $level: LogLevel, $since: DateTime, $first: Int, $after: String) {
  logEntries(jobId: $jobId, level: $level, since: $since, first: $first, after: $after) {
    edges { cursor node { id at level message jobId runId details } }
    pageInfo { hasNextPage endCursor }
  } }`;

export type Connection = { edges: { cursor: string; node: Json }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };

export const input = (overrides: Json = {}) => ({ id: 'job-1', name: 'A job', externalCall: 'Test:ok', period: '0:0:5', ...overrides });

export async function createJob(app: App, overrides: Json = {}): Promise<Json> {
  return (await gqlOk(app, CREATE, { input: input(overrides) }))['createJob'];
}

export const runsPage = async (app: App, vars: Json = {}): Promise<Connection> => (await gqlOk(app, RUNS, vars))['runs'];
export const logPage = async (app: App, vars: Json = {}): Promise<Connection> => (await gqlOk(app, LOG, vars))['logEntries'];

export function assertError(result: GraphQLResponse, code: string, field?: string): void {
  const error = result.errors?.[0];
  assert.ok(error, `expected a ${code} error, got ${result.text}`);
  assert.equal(error.extensions?.code, code, result.text);
  if (field !== undefined) assert.equal(error.extensions?.field, field, result.text);
  // A rejected mutation or query returns no data for the field.
  const data = result.data;
  if (data) for (const value of Object.values(data)) assert.equal(value, null, result.text);
}

/** Assertions that a rejected operation changed nothing in the database `sql`. */
export function rejections(sql: Sql) {
  /** Runs the operation, asserts it is rejected with `code` (and `field`) and changed nothing. */
  async function rejects(app: App, query: string, variables: Json, code: string, field?: string): Promise<GraphQLResponse> {
    const before = await snapshot(sql);
    const result = await gql(app, query, variables);
    assertError(result, code, field);
    assert.equal(await snapshot(sql), before, `${query} ${JSON.stringify(variables)} changed nothing`);
    return result;
  }

  return { rejects };
}

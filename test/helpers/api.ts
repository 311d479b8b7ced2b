import { after } from 'node:test';
import type { Logger } from 'pino';
import type { Sql } from '../../src/db/client.ts';
import { type App, buildApp } from '../../src/http/app.ts';
import { type Harness, silentLog } from './harness.ts';

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
export async function gql<T = Json>(
  app: App,
  query: string,
  variables?: Record<string, unknown>,
): Promise<GraphQLResponse<T>> {
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

/**
 * Resolves once `condition` holds, checking after each turn of the event loop; for state that
 * has no event to await (e.g. a subscription registering on the bus). Fails after `timeoutMs`.
 */
export async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

// The kit of the auth tests: canary tokens of each role, an app with them, and one way per
// transport (HTTP, graphql-ws, SSE) to send an operation as someone and see what came back.
import { after } from 'node:test';
import { type Client, createClient } from 'graphql-ws';
import pino from 'pino';
import { Gauge, Registry } from 'prom-client';
import WebSocket from 'ws';
import { parseTokenLines, type Role, TokenStore } from '../../src/auth/tokens.ts';
import { type App, buildApp } from '../../src/http/app.ts';
import type { Json } from './api.ts';
import type { Harness } from './harness.ts';
import { sseFrames } from './live.ts';

/** Canary tokens: none of them may ever appear in an answer or a log line. */
export const TOKENS = {
  viewer: 'canary-viewer-3f9a1c7e5b2d4f60a8',
  operator: 'canary-operator-9d2e4b6a8c0f1e3d57',
  admin: 'canary-admin-1b3d5f7a9c2e4a6c8e0',
  unknown: 'canary-unknown-5e7c9a1b3d5f7e9a2c',
} as const;
export const CANARIES: readonly string[] = Object.values(TOKENS);

/** Who sends a request in the matrix: no token, an unknown one, or a token of each role. */
export type Who = 'none' | 'unknown' | Role;
export const EVERYONE: readonly Who[] = ['none', 'unknown', 'viewer', 'operator', 'admin'];

export const authorizationOf = (who: Who): string | undefined => (who === 'none' ? undefined : `Bearer ${TOKENS[who]}`);

/** The token store of AUTH_TOKENS=viewer-bot:viewer:…,ops-bot:operator:…,admin-bot:admin:… */
export function tokenStore(): TokenStore {
  const { entries, problems } = parseTokenLines(
    'AUTH_TOKENS',
    (['viewer', 'operator', 'admin'] as const).map((role) => ({ text: `${role}-bot:${role}:${TOKENS[role]}`, where: role })),
  );
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return new TokenStore(true, entries);
}
export const NAME_OF: Record<Role, string> = { viewer: 'viewer-bot', operator: 'operator-bot', admin: 'admin-bot' };

/** Every line the app logged, to check that no token reaches the log. */
export function capturedLog(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const log = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
  return { log, lines };
}

/** The app over a harness with these tokens, listening on a free port; closed when the file ends. */
export async function authApp(h: Harness, tokens: TokenStore, log: pino.Logger): Promise<{ app: App; port: number; url: string }> {
  const registry = new Registry();
  new Gauge({ name: 'server_jobs_auth_test', help: 'A metric of the auth tests.', registers: [registry] }).set(1);
  const app = buildApp({
    context: { sql: h.sql, jobs: h.jobs, connectors: h.connectors, registry: h.registry, bus: h.bus },
    log,
    auth: tokens,
    metrics: () => registry,
    health: async () => ({ ok: true, body: {} }),
  });
  const port = await app.listen(0, '127.0.0.1');
  after(() => app.close());
  return { app, port, url: `http://127.0.0.1:${port}/graphql` };
}

/** One answer, whatever the transport. */
export interface Answer {
  /** HTTP status (HTTP and SSE). */
  status?: number;
  data?: Json | null;
  errors?: { message: string; path?: (string | number)[]; extensions?: Json }[];
  /** graphql-ws: the close code when the connection was closed. */
  closeCode?: number;
  /** graphql-ws: whether the connection was still open after the answer. */
  open?: boolean;
  /** Everything received, as text, to look for canaries. */
  text: string;
}

/** POSTs an operation with `who`'s token. */
export async function overHttp(url: string, who: Who, query: string, variables?: Json): Promise<Answer> {
  const authorization = authorizationOf(who);
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
      ...(authorization ? { authorization } : {}),
    },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  const body = JSON.parse(text) as { data?: Json | null; errors?: Answer['errors'] };
  return { status: response.status, data: body.data, errors: body.errors, text: `${[...response.headers].join('\n')}\n${text}` };
}

/** A graphql-ws client sending `who`'s token in connectionParams, closed when the file ends. */
export function wsClient(port: number, who: Who, on: { closed?: (code: number) => void; connected?: () => void } = {}): Client {
  const authorization = authorizationOf(who);
  const client = createClient({
    url: `ws://127.0.0.1:${port}/graphql`,
    webSocketImpl: WebSocket,
    retryAttempts: 0,
    lazy: false,
    connectionParams: authorization ? { authorization } : {},
    on: { closed: (event) => on.closed?.((event as { code: number }).code), connected: () => on.connected?.() },
    onNonLazyError: () => {},
  });
  after(() => client.dispose());
  return client;
}

/** Runs one query or mutation over a fresh graphql-ws connection, then a `me` on the same connection. */
export async function overWs(port: number, who: Who, query: string, variables?: Json): Promise<Answer> {
  let closeCode: number | undefined;
  let connections = 0;
  const client = wsClient(port, who, { closed: (code) => (closeCode = code), connected: () => connections++ });
  try {
    const result = await new Promise<{ data?: Json | null; errors?: Answer['errors'] } | { closed: unknown }>((resolve) => {
      let got: { data?: Json | null; errors?: Answer['errors'] } | undefined;
      client.subscribe<Json>(
        { query, variables },
        {
          next: (value) => (got = value as typeof got),
          error: (error) => resolve({ closed: error }),
          complete: () => resolve(got ?? {}),
        },
      );
    });
    if ('closed' in result) {
      const code = (result.closed as { code?: number }).code ?? closeCode;
      return { closeCode: code, open: false, text: JSON.stringify(result.closed) ?? '' };
    }
    // The socket stays open for the next operation: `me` answers on it.
    const me = await new Promise<Json | null>((resolve) => {
      client.subscribe<Json>(
        { query: '{ me { name } }' },
        { next: (value) => resolve(value.data ?? null), error: () => resolve(null), complete: () => {} },
      );
    });
    return {
      data: result.data,
      errors: result.errors,
      open: me !== null && closeCode === undefined && connections === 1,
      text: JSON.stringify(result),
    };
  } finally {
    await client.dispose();
  }
}

/** Opens an SSE subscription with `who`'s token: its status, and the frames as they come. */
export async function sseSubscribe(url: string, who: Who, query: string, signal: AbortSignal) {
  const authorization = authorizationOf(who);
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream', ...(authorization ? { authorization } : {}) },
    body: JSON.stringify({ query }),
    signal,
  });
  return { response, frames: response.body && response.ok ? sseFrames(response.body) : null };
}

import fs from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Writable } from 'node:stream';
import { GraphQLError, getOperationAST, type ExecutionArgs } from 'graphql';
import type { OperationResult } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { type WebSocket, WebSocketServer } from 'ws';
import { TokenStore } from '../auth/tokens.ts';
import type { Context } from '../graphql/builder.ts';
import { createLoaders } from '../graphql/loaders.ts';
import { schema } from '../graphql/schema.ts';
import { useGraphQLLimits } from '../graphql/limits.ts';
import { useVariableErrorFields } from '../graphql/variable-errors.ts';
import { useNoNulText } from '../graphql/nul-text.ts';
import { ApiAuth, SOCKET_PRINCIPAL } from './auth.ts';
import { GRAPHIQL_TABS } from './graphiql-tabs.ts';
import { useMalformedRequestErrors } from './malformed.ts';
import {
  corsFor,
  DEFAULT_WEB,
  HOST_EXEMPT_PATHS,
  isHostAllowed,
  isSocketOriginAllowed,
  readBody,
  sendHostRefused,
  sendTooLarge,
  useWebGuards,
  type WebOptions,
} from './web-guard.ts';
import { renderGraphiQLWithToken } from './graphiql-token.ts';
import { Dashboard } from './dashboard.ts';
import { SharedSubscriptions } from './shared-subscriptions.ts';

const MAX_SOCKET_BACKLOG_BYTES = 16 * 1024 * 1024;

export interface AppDeps {
  context: Omit<Context, 'principal' | 'loaders'>;
  log: Logger;
  /** The Prometheus registry served at /metrics, when there is one. */
  metrics?: () => Registry;
  /** Readiness: whether the database answers and the scheduler is alive. */
  health(): Promise<{ ok: boolean; body: Record<string, unknown> }>;
  /** The web-facing settings (Host allow-list, CORS, TLS, limits; web-guard.ts); the defaults when absent. */
  web?: WebOptions;
  /** The API tokens (SPEC §8; http/auth.ts); auth is off when absent. */
  auth?: TokenStore;
}

export interface App {
  yoga: YogaServerInstance<Record<string, never>, Context>;
  /** Starts listening; resolves with the bound port. */
  listen(port: number, host: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * The HTTP face of the service: graphql-yoga at /graphql (GraphiQL, queries, mutations, SSE
 * subscriptions), graphql-ws on the same path, and /health. Only main listens; tests call
 * `yoga.fetch` or listen on port 0.
 */
export function buildApp(deps: AppDeps): App {
  const web = deps.web ?? DEFAULT_WEB;
  const auth = new ApiAuth(deps.auth ?? TokenStore.off());
  const loaders = createLoaders(deps.context.sql);
  const dashboard = new Dashboard();
  const yoga = createYoga<Record<string, never>, Context>({
    schema,
    // A fresh context object per request around the shared services, with who asks (UNAUTHENTICATED without a known token).
    context: (initial) => ({ ...deps.context, loaders, principal: auth.principalOf(initial) }),
    graphiql: web.graphiql ? { title: 'Server Jobs', subscriptionsProtocol: 'WS', defaultTabs: GRAPHIQL_TABS } : false,
    // No CORS headers unless CORS_ORIGINS lists the origin (yoga's default answers any origin).
    cors: corsFor(web.corsOrigins),
    // GraphiQL's code is inlined, so it works on a closed network with no CDN; its subscriptions carry the Headers tab's token.
    renderGraphiQL: renderGraphiQLWithToken,
    logging: false,
    // A bad variable value answers BAD_USER_INPUT with its field, like every other bad input.
    // Tokens: a request without a known one is refused before it is parsed (http/auth.ts).
    // CSRF prevention and the GraphQL limits (SPEC §8): web-guard.ts, limits.ts.
    // Text with a NUL is bad input (nul-text.ts); malformed requests (bad JSON parameters, documents
    // too deep to parse) are 400s (malformed.ts): last, to wrap the others' parsers.
    plugins: [
      useVariableErrorFields(),
      useNoNulText(),
      ...useWebGuards(web),
      ...useGraphQLLimits(web.limits, web),
      auth.plugin(),
      useMalformedRequestErrors(),
    ],
    maskedErrors: {
      maskError(error, message) {
        const original = error instanceof GraphQLError ? error.originalError : error;
        if (original && !(original instanceof GraphQLError)) {
          deps.log.error({ err: original }, 'unexpected error in a GraphQL operation');
          return new GraphQLError(message, { extensions: { code: 'INTERNAL_SERVER_ERROR' } });
        }
        return error as Error;
      },
    },
  });

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    route(req, res).catch((error: unknown) => {
      deps.log.error({ err: error, url: req.url }, 'HTTP request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };
  // TLS_CERT_FILE / TLS_KEY_FILE: HTTPS and WSS on the same port (config.ts checked the pair).
  const server: Server = web.tls
    ? createHttpsServer({ cert: fs.readFileSync(web.tls.certFile), key: fs.readFileSync(web.tls.keyFile) }, handler)
    : createServer(handler);
  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    // DNS rebinding: a page whose name now points here carries its own name as Host (SPEC §8).
    if (!HOST_EXEMPT_PATHS.has(path) && !isHostAllowed(req.headers.host, web)) return sendHostRefused(res, req.headers.host);
    if (path === '/health/live') return sendJson(res, 200, { status: 'ok' });
    if (path === '/health') {
      const { ok, body } = await deps.health().catch((error: unknown) => ({ ok: false, body: { error: String(error) } }));
      return sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'unavailable', ...body });
    }
    if (path === '/metrics' && deps.metrics) {
      if (!auth.allowsMetrics(req, res)) return;
      const registry = deps.metrics();
      res.writeHead(200, { 'content-type': registry.contentType }).end(await registry.metrics());
      return;
    }
    // The dashboard (SPEC §11); GraphiQL stays at /graphql.
    if (Dashboard.owns(path)) return dashboard.serve(req, res, path);
    if (!web.graphiql && req.method === 'GET' && !req.url?.includes('query=') && req.headers.accept?.includes('text/html')) {
      return sendJson(res, 404, { error: 'GraphiQL is turned off (GRAPHIQL=false)' });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'OPTIONS') {
      // Read here, up to MAX_BODY_BYTES (413 past it); yoga takes a body already read from `req.body`.
      const body = await readBody(req, web.maxBodyBytes);
      if (body === null) return sendTooLarge(res, web.maxBodyBytes);
      Object.assign(req, { body });
    }
    return yoga.handle(req, res);
  };

  const wss = new WebSocketServer({
    server,
    path: yoga.graphqlEndpoint,
    // A message over MAX_BODY_BYTES closes the socket (1009), as an HTTP body over it is a 413.
    maxPayload: web.maxBodyBytes,
    // Refused before the upgrade completes: a Host not ours, or a page of another site (SPEC §8).
    verifyClient: ({ req }: { req: IncomingMessage }, done: (ok: boolean, code?: number, message?: string) => void) => {
      if (!isHostAllowed(req.headers.host, web)) return done(false, 403, 'Host not allowed');
      if (!isSocketOriginAllowed(req.headers.origin, req.headers.host, web)) return done(false, 403, 'Cross-site WebSocket refused');
      done(true);
    },
  });
  // Subscribers asking the same thing with the same principal share one execution per event.
  const shared = new SharedSubscriptions({ bus: deps.context.bus, maxBacklogBytes: MAX_SOCKET_BACKLOG_BYTES });
  const principalKeys = new WeakMap<object, number>();
  let principals = 0;
  const principalKey = (principal: object) => {
    let key = principalKeys.get(principal);
    if (key === undefined) principalKeys.set(principal, (key = ++principals));
    return key;
  };
  const wsServer = useServer(
    {
      // A client that does not read its socket is dropped before its backlog grows without bound;
      // the scheduler never waits for it either way.
      onNext: (ctx) => {
        if (ctx.extra.socket.bufferedAmount > MAX_SOCKET_BACKLOG_BYTES) ctx.extra.socket.close(1013, 'subscriber too slow');
      },
      // connectionParams.authorization: no known token closes the connection with 4401 (SPEC §8).
      onConnect: (ctx) => auth.connect(ctx.extra.socket, ctx.connectionParams),
      execute: (args) => (args.rootValue as Enveloped).execute(args),
      subscribe: (args) => {
        const root = args.rootValue as Enveloped;
        if (!root.share) return root.subscribe(args);
        return shared.subscribe(root.share.key, () => root.subscribe(args), root.share);
      },
      onSubscribe: async (ctx, id, payload) => {
        const principal = auth.principalOfSocket(ctx.extra.socket);
        const enveloped = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          [SOCKET_PRINCIPAL]: principal,
        });
        let document;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          // A document over GRAPHQL_MAX_TOKENS comes coded GRAPHQL_VALIDATION_FAILED (limits.ts).
          const code = error instanceof GraphQLError && error.extensions['code'] ? error.extensions['code'] : 'GRAPHQL_PARSE_FAILED';
          return [new GraphQLError((error as Error).message, { extensions: { code } })];
        }
        const root: Enveloped = { execute: enveloped.execute, subscribe: enveloped.subscribe };
        const args: ExecutionArgs = {
          schema: enveloped.schema,
          operationName: payload.operationName ?? null,
          document,
          variableValues: payload.variables ?? null,
          contextValue: await enveloped.contextFactory(),
          rootValue: root,
        };
        const errors: readonly GraphQLError[] = enveloped.validate(args.schema, args.document);
        if (errors.length > 0) {
          return errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
        }
        // The same document, operation and variables asked with the same principal: the same results, event by event.
        if (principal && getOperationAST(document, args.operationName)?.operation === 'subscription') {
          const key = JSON.stringify([payload.query, args.operationName, args.variableValues, principalKey(principal)]);
          root.share = { key, socket: ctx.extra.socket, stream: ctx.extra.request.socket, id };
        }
        return args;
      },
    },
    wss,
  );

  return {
    yoga,
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
      }),
    close: async () => {
      await wsServer.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Enveloped = {
  execute: (args: ExecutionArgs) => OperationResult;
  subscribe: (args: ExecutionArgs) => OperationResult;
  /** A subscription served from the one its equals share (shared-subscriptions.ts). */
  share?: { key: string; socket: WebSocket; stream: Writable; id: string };
};

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

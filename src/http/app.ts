import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GraphQLError, type ExecutionArgs } from 'graphql';
import type { OperationResult } from 'graphql-ws';
import { useServer } from 'graphql-ws/use/ws';
import { createYoga, type YogaServerInstance } from 'graphql-yoga';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import { TokenStore } from '../auth/tokens.ts';
import type { Context } from '../graphql/builder.ts';
import { schema } from '../graphql/schema.ts';
import { useVariableErrorFields } from '../graphql/variable-errors.ts';
import { ApiAuth, SOCKET_PRINCIPAL } from './auth.ts';
import { GRAPHIQL_TABS } from './graphiql-tabs.ts';
import { renderGraphiQLWithToken } from './graphiql-token.ts';

const MAX_SOCKET_BACKLOG_BYTES = 16 * 1024 * 1024;

export interface AppDeps {
  context: Omit<Context, 'principal'>;
  log: Logger;
  /** The Prometheus registry served at /metrics, when there is one. */
  metrics?: () => Registry;
  /** Readiness: whether the database answers and the scheduler is alive. */
  health(): Promise<{ ok: boolean; body: Record<string, unknown> }>;
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
  const auth = new ApiAuth(deps.auth ?? TokenStore.off());
  const yoga = createYoga<Record<string, never>, Context>({
    schema,
    // A fresh context object per request around the shared services, with who asks (UNAUTHENTICATED without a known token).
    context: (initial) => ({ ...deps.context, principal: auth.principalOf(initial) }),
    graphiql: { title: 'Server Jobs', subscriptionsProtocol: 'WS', defaultTabs: GRAPHIQL_TABS },
    // GraphiQL's code is inlined, so it works on a closed network with no CDN; its subscriptions carry the Headers tab's token.
    renderGraphiQL: renderGraphiQLWithToken,
    logging: false,
    // A bad variable value answers BAD_USER_INPUT with its field, like every other bad input.
    // Tokens: a request without a known one is refused before it is parsed (http/auth.ts).
    plugins: [useVariableErrorFields(), auth.plugin()],
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

  const server: Server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      deps.log.error({ err: error, url: req.url }, 'HTTP request failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
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
    if (path === '/') {
      res.writeHead(302, { location: yoga.graphqlEndpoint }).end();
      return;
    }
    return yoga.handle(req, res);
  };

  const wss = new WebSocketServer({ server, path: yoga.graphqlEndpoint });
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
      subscribe: (args) => (args.rootValue as Enveloped).subscribe(args),
      onSubscribe: async (ctx, _id, payload) => {
        const enveloped = yoga.getEnveloped({
          ...ctx,
          req: ctx.extra.request,
          socket: ctx.extra.socket,
          params: payload,
          [SOCKET_PRINCIPAL]: auth.principalOfSocket(ctx.extra.socket),
        });
        let document;
        try {
          document = enveloped.parse(payload.query);
        } catch (error) {
          return [new GraphQLError((error as Error).message, { extensions: { code: 'GRAPHQL_PARSE_FAILED' } })];
        }
        const args: ExecutionArgs = {
          schema: enveloped.schema,
          operationName: payload.operationName ?? null,
          document,
          variableValues: payload.variables ?? null,
          contextValue: await enveloped.contextFactory(),
          rootValue: { execute: enveloped.execute, subscribe: enveloped.subscribe },
        };
        const errors: readonly GraphQLError[] = enveloped.validate(args.schema, args.document);
        if (errors.length > 0) {
          return errors.map((e) => new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'GRAPHQL_VALIDATION_FAILED' } }));
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
};

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

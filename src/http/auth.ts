// Who may use the API (SPEC §8), at each of its doors: a bearer token on every HTTP request
// (queries, mutations, SSE subscriptions, /metrics), `connectionParams.authorization` once per
// graphql-ws connection. What a known token may do is the schema's business (scope-auth, the
// roles in graphql/builder.ts); here a request without a known token is refused whole, and the
// live subscriptions of a token that is gone are ended.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ExecutionResult, GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { WebSocket } from 'ws';
import { hasRole, type Principal, type TokenStore } from '../auth/tokens.ts';

/** The key under which a graphql-ws operation's initial context carries its connection's principal. */
export const SOCKET_PRINCIPAL = Symbol('the principal of a graphql-ws connection');

const CHALLENGE = 'Bearer realm="server-jobs"';
/** graphql-ws's close code for a connection without a valid token (CloseCode.Unauthorized). */
export const CLOSE_UNAUTHORIZED = 4401;

const NO_TOKEN =
  'A valid API token is needed: send it as "Authorization: Bearer <token>" (over graphql-ws, as connectionParams.authorization).';
const REVOKED = 'The token of this subscription is no longer valid.';

/** UNAUTHENTICATED, HTTP 401 with a bearer challenge (yoga takes status and headers from `extensions.http`). */
export function unauthenticated(message = NO_TOKEN): GraphQLError {
  return new GraphQLError(message, {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'www-authenticate': CHALLENGE } } },
  });
}

export class ApiAuth {
  /** Open graphql-ws connections and the principal each was opened with. */
  readonly #sockets = new Map<WebSocket, Principal>();
  /** HTTP requests authenticated before they were parsed. */
  readonly #requests = new WeakMap<Request, Principal>();

  constructor(readonly tokens: TokenStore) {
    // A token that is gone (AUTH_TOKENS_FILE changed) closes its connections at once.
    tokens.onChange(() => {
      for (const [socket, principal] of this.#sockets) {
        if (!tokens.isCurrent(principal)) socket.close(CLOSE_UNAUTHORIZED, 'Unauthorized: the token is no longer valid');
      }
    });
  }

  /**
   * The principal of a GraphQL operation, from yoga's initial context: a graphql-ws operation's
   * connection's, or an HTTP request's Authorization header. Throws UNAUTHENTICATED (401).
   */
  principalOf(initial: object): Principal {
    const carried = (initial as { [SOCKET_PRINCIPAL]?: Principal })[SOCKET_PRINCIPAL];
    if (carried) {
      if (!this.tokens.isCurrent(carried)) throw unauthenticated(REVOKED);
      return carried;
    }
    const request = (initial as { request?: Request }).request;
    const principal = (request && this.#requests.get(request)) ?? this.#authenticate(request);
    if (!principal) throw unauthenticated();
    return principal;
  }

  #authenticate(request: Request | undefined): Principal | null {
    const principal = this.tokens.authenticate(request?.headers.get('authorization'));
    if (principal && request) this.#requests.set(request, principal);
    return principal;
  }

  /**
   * graphql-ws's onConnect: the token of `connectionParams.authorization`. Without a known one
   * the connection is closed with 4401 (and false tells graphql-ws not to acknowledge it).
   */
  connect(socket: WebSocket, connectionParams: Readonly<Record<string, unknown>> | undefined): boolean {
    const value = connectionParams?.['authorization'] ?? connectionParams?.['Authorization'];
    const principal = this.tokens.authenticate(typeof value === 'string' ? value : null);
    if (!principal) {
      socket.close(CLOSE_UNAUTHORIZED, 'Unauthorized');
      return false;
    }
    this.#sockets.set(socket, principal);
    socket.once('close', () => this.#sockets.delete(socket));
    return true;
  }

  /** The principal a graphql-ws connection was acknowledged with. */
  principalOfSocket(socket: WebSocket): Principal | undefined {
    return this.#sockets.get(socket);
  }

  /** /metrics needs a viewer token (SPEC §8); otherwise answers 401 and returns false. */
  allowsMetrics(req: IncomingMessage, res: ServerResponse): boolean {
    const principal = this.tokens.authenticate(req.headers.authorization);
    if (principal && hasRole(principal, 'viewer')) return true;
    const body = { errors: [{ message: NO_TOKEN, extensions: { code: 'UNAUTHENTICATED' } }] };
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': CHALLENGE }).end(JSON.stringify(body));
    return false;
  }

  /**
   * Ends an SSE subscription whose token is gone: an UNAUTHENTICATED error, then the end of the
   * stream (a graphql-ws one ends with its connection, closed 4401 above).
   */
  plugin(): Plugin {
    return {
      // An HTTP request (a query, a mutation, an SSE subscription) without a known token is
      // refused before its document is even parsed: 401, UNAUTHENTICATED.
      onRequestParse: ({ request }) => {
        if (!this.#authenticate(request)) throw unauthenticated();
      },
      onSubscribe: ({ args }) => {
        const context = args.contextValue as { [SOCKET_PRINCIPAL]?: Principal; principal?: Principal };
        const principal = context.principal;
        if (context[SOCKET_PRINCIPAL] || !principal || !this.tokens.enabled) return;
        return {
          onSubscribeResult: ({ result, setResult }) => {
            if (isAsyncIterable(result)) setResult(this.#endWhenRevoked(result, principal));
          },
        };
      },
    };
  }

  #endWhenRevoked(source: AsyncIterable<ExecutionResult>, principal: Principal): AsyncIterableIterator<ExecutionResult> {
    const inner = source[Symbol.asyncIterator]();
    let finished = false;
    let revoked = false;
    let announce!: (result: IteratorResult<ExecutionResult>) => void;
    const revocation = new Promise<IteratorResult<ExecutionResult>>((resolve) => (announce = resolve));
    const check = () => {
      if (revoked || this.tokens.isCurrent(principal)) return;
      revoked = true;
      announce({ value: { errors: [unauthenticated(REVOKED)] }, done: false });
    };
    const off = this.tokens.onChange(check);
    const finish = () => {
      if (finished) return;
      finished = true;
      off();
      Promise.resolve(inner.return?.()).catch(() => {});
    };
    const iterator: AsyncIterableIterator<ExecutionResult> = {
      next: async () => {
        if (finished) return { value: undefined, done: true };
        try {
          // The revocation first: once it happened, no further event is delivered.
          const result = await Promise.race([revocation, inner.next()]);
          if (revoked || result.done) finish();
          return result;
        } catch (error) {
          finish();
          throw error;
        }
      },
      return: async () => {
        finish();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}

const isAsyncIterable = (value: unknown): value is AsyncIterable<ExecutionResult> =>
  typeof value === 'object' && value !== null && Symbol.asyncIterator in value;

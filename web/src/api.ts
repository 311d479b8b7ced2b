// The public API, as any client reaches it (SPEC §5, §6, §8): operations as JSON POSTs to
// /graphql with the token as `Authorization: Bearer …`; subscriptions over one graphql-ws
// connection whose connectionParams carry the same. The token is kept in sessionStorage: for this
// tab, gone when it closes.
import { type Client, createClient } from 'graphql-ws';

const TOKEN_KEY = 'server-jobs.token';

/** An error as the API words it: its message, and its `extensions.code` when it has one. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

interface GraphQLAnswer<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function storeToken(token: string | null): void {
  try {
    if (token === null) sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* storage refused (a private window): the token lasts as long as the page */
  }
}

export type ConnectionState = 'connecting' | 'live' | 'offline';

export class Api {
  readonly endpoint: string;
  #client: Client | null = null;
  #connections = 0;
  #reconnected = new Set<() => void>();
  #state = new Set<(state: ConnectionState) => void>();
  #unauthorized = new Set<() => void>();
  #prefetched = new Map<string, Promise<unknown>>();

  constructor(readonly token: string | null) {
    this.endpoint = new URL('graphql', location.href).toString();
  }

  #headers(): Record<string, string> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json',
    };
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    return headers;
  }

  /**
   * Sends a query now whose answer a later `request` with the same query and variables takes
   * (once): the page asks for its jobs while it still asks who it is, not after.
   */
  prefetch(query: string, variables: Record<string, unknown> = {}): void {
    const answer = this.#send(query, variables);
    answer.catch(() => {}); // its error goes to the `request` that takes it, if any
    this.#prefetched.set(JSON.stringify([query, variables]), answer);
  }

  /** One query or mutation; rejects with the API's first error (all of them, when several). */
  request<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const key = JSON.stringify([query, variables]);
    const early = this.#prefetched.get(key);
    if (early) {
      this.#prefetched.delete(key);
      return early as Promise<T>;
    }
    return this.#send(query, variables);
  }

  async #send<T>(query: string, variables: Record<string, unknown>): Promise<T> {
    let response: Response;
    try {
      response = await fetch(this.endpoint, { method: 'POST', headers: this.#headers(), body: JSON.stringify({ query, variables }) });
    } catch (error) {
      throw new ApiError(`The service did not answer: ${error instanceof Error ? error.message : String(error)}`, 'NETWORK');
    }
    let answer: GraphQLAnswer<T>;
    try {
      answer = (await response.json()) as GraphQLAnswer<T>;
    } catch {
      throw new ApiError(`The service answered HTTP ${response.status}.`, response.status === 401 ? 'UNAUTHENTICATED' : null);
    }
    if (answer.errors?.length) {
      const messages = [...new Set(answer.errors.map((e) => e.message))];
      throw new ApiError(messages.join('\n'), answer.errors[0]?.extensions?.code ?? null);
    }
    if (!answer.data) throw new ApiError(`The service answered HTTP ${response.status} with no data.`);
    return answer.data;
  }

  /** The graphql-ws connection, opened at once and reopened whenever it drops. */
  #live(): Client {
    this.#client ??= createClient({
      url: this.endpoint.replace(/^http/, 'ws'),
      connectionParams: () => (this.token ? { authorization: `Bearer ${this.token}` } : {}),
      lazy: false,
      keepAlive: 15_000,
      retryAttempts: Number.POSITIVE_INFINITY,
      // Every close is retried, with graphql-ws's growing, randomised wait, except the service's
      // 4401 (SPEC §8: no valid token, e.g. one removed from AUTH_TOKENS_FILE): the page asks again.
      shouldRetry: (closed) => !isUnauthorized(closed),
      on: {
        connecting: () => this.#setState(this.#connections === 0 ? 'connecting' : 'offline'),
        connected: () => {
          this.#setState('live');
          // Events sent while the connection was down are lost: whoever shows them catches up from the queries.
          if (this.#connections++ > 0) for (const listener of this.#reconnected) listener();
        },
        closed: () => this.#setState(this.#connections === 0 ? 'connecting' : 'offline'),
      },
    });
    return this.#client;
  }

  #setState(state: ConnectionState): void {
    for (const listener of this.#state) listener(state);
  }

  /** Calls `listener` with the connection's state as it changes. */
  onState(listener: (state: ConnectionState) => void): () => void {
    this.#state.add(listener);
    return () => this.#state.delete(listener);
  }

  /** Calls `listener` when the service refuses the token of the live connection (4401). */
  onUnauthorized(listener: () => void): () => void {
    this.#unauthorized.add(listener);
    return () => this.#unauthorized.delete(listener);
  }

  /** Calls `listener` after each reconnection (not the first connection). */
  onReconnect(listener: () => void): () => void {
    this.#reconnected.add(listener);
    return () => this.#reconnected.delete(listener);
  }

  /**
   * A subscription: `next` gets each event's data. When the API ends it with an error (e.g.
   * EVENTS_INTERRUPTED: events it cannot vouch for), `interrupted` is called and it subscribes
   * again a moment later, so the caller catches up from the queries and goes on.
   */
  subscribe<T>(query: string, variables: Record<string, unknown>, sink: { next: (data: T) => void; interrupted?: () => void }): () => void {
    let stopped = false;
    let stop: () => void = () => {};
    let retry: ReturnType<typeof setTimeout> | undefined;
    const start = () => {
      stop = this.#live().subscribe<T>(
        { query, variables },
        {
          next: (result) => {
            if (result.data) sink.next(result.data as T);
          },
          error: (error) => {
            if (stopped) return;
            if (isUnauthorized(error)) {
              for (const listener of this.#unauthorized) listener();
              return;
            }
            sink.interrupted?.();
            retry = setTimeout(start, 1000);
          },
          complete: () => {},
        },
      );
    };
    start();
    return () => {
      stopped = true;
      clearTimeout(retry);
      stop();
    };
  }

  dispose(): void {
    void this.#client?.dispose();
    this.#client = null;
  }
}

/** graphql-ws's close for a connection without a valid token (SPEC §8). */
const isUnauthorized = (closed: unknown): boolean =>
  typeof closed === 'object' && closed !== null && (closed as { code?: unknown }).code === 4401;

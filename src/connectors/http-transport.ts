import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type stream from 'node:stream';
import { checkAddress, normaliseHost, type AllowList } from './address-policy.ts';
import { describeNetworkError } from './http-response.ts';

/** Resolves a host name to all its addresses (injectable for tests). */
export type HostLookup = (hostname: string) => Promise<{ address: string; family: number }[]>;

export interface HttpTransportOptions {
  /** `HTTP_CONNECTOR_ALLOW_HOSTS`, parsed. */
  allow: AllowList;
  lookup?: HostLookup;
  /** Connections open at once per host:port (default 8); further requests wait for one. */
  maxSockets?: number;
  /** Idle connections kept per host:port (default 4). */
  maxFreeSockets?: number;
  /**
   * How long an idle connection is kept (default 4 s): shorter than the usual server keep-alive
   * (5 s for Node and Apache, 75 s for nginx), and shorter still when the server announces a
   * `Keep-Alive: timeout=` of its own.
   */
  freeSocketTimeoutMs?: number;
}

/** One request: sent by `HttpTransport.send`. */
export interface Outgoing {
  url: URL;
  method: 'POST' | 'GET';
  headers: Record<string, string>;
  signal: AbortSignal;
  /** How messages name this request: `POST http://…` or `redirect to http://…`. */
  describe: string;
}

export const DEFAULT_MAX_SOCKETS = 8;
export const DEFAULT_MAX_FREE_SOCKETS = 4;
export const DEFAULT_FREE_SOCKET_TIMEOUT_MS = 4000;
/** An idle connection is given up this long before the server said it would close it. */
const SERVER_HINT_MARGIN_MS = 1000;

const defaultLookup: HostLookup = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/** Thrown when the address policy refuses a destination. */
class RefusedError extends Error {}

/** A reused connection the server had closed before our request reached it: worth one retry. */
class StaleConnectionError extends Error {}

/** What an agent needs to know of its transport. */
interface PoolState {
  closed: boolean;
  freeSocketTimeoutMs: number;
  /** The `Keep-Alive: timeout=` a server announced on a connection, in ms. */
  serverTimeouts: WeakMap<stream.Duplex, number>;
}

/** How long an idle connection may be kept; 0 when it must not be kept at all. */
function idleTimeout(pool: PoolState, socket: stream.Duplex): number {
  if (pool.closed) return 0;
  const announced = pool.serverTimeouts.get(socket);
  if (announced === undefined) return pool.freeSocketTimeoutMs;
  return Math.max(0, Math.min(pool.freeSocketTimeoutMs, announced - SERVER_HINT_MARGIN_MS));
}

/*
 * Node's agents with two changes: an idle connection times out after the transport's idle
 * timeout (the server's hint respected) while one in use has no socket timeout (the connector's
 * own deadline governs a call), and nothing is kept once the transport is closed. Node's agent
 * destroys an idle connection whose timeout fires.
 */
class PooledHttpAgent extends http.Agent {
  constructor(
    options: http.AgentOptions,
    private readonly pool: PoolState,
  ) {
    super(options);
  }
  override keepSocketAlive(socket: stream.Duplex): boolean {
    const ms = idleTimeout(this.pool, socket);
    if (ms === 0) return false;
    super.keepSocketAlive(socket);
    (socket as net.Socket).setTimeout(ms);
    return true;
  }
  override reuseSocket(socket: stream.Duplex, request: http.ClientRequest): void {
    super.reuseSocket(socket, request);
    (socket as net.Socket).setTimeout(0);
  }
}

class PooledHttpsAgent extends https.Agent {
  constructor(
    options: https.AgentOptions,
    private readonly pool: PoolState,
  ) {
    super(options);
  }
  override keepSocketAlive(socket: stream.Duplex): boolean {
    const ms = idleTimeout(this.pool, socket);
    if (ms === 0) return false;
    super.keepSocketAlive(socket);
    (socket as net.Socket).setTimeout(ms);
    return true;
  }
  override reuseSocket(socket: stream.Duplex, request: http.ClientRequest): void {
    super.reuseSocket(socket, request);
    (socket as net.Socket).setTimeout(0);
  }
}

/**
 * The sending half of an HTTP connector: one pool of kept-alive connections per connector (an
 * http and an https agent; Node keys their connections by host:port and TLS options, so a
 * connection is only ever reused for the host and port it was opened to), under the address
 * policy of SPEC §8. The address checked is the address connected to: the check runs inside
 * each new connection's own DNS lookup, so a DNS answer cannot change in between; a kept
 * connection stays connected to the address that was checked when it was opened.
 */
export class HttpTransport {
  readonly #allow: AllowList;
  readonly #lookup: HostLookup;
  readonly #pool: PoolState;
  readonly #http: PooledHttpAgent;
  readonly #https: PooledHttpsAgent;

  constructor(options: HttpTransportOptions) {
    this.#allow = options.allow;
    this.#lookup = options.lookup ?? defaultLookup;
    this.#pool = {
      closed: false,
      freeSocketTimeoutMs: options.freeSocketTimeoutMs ?? DEFAULT_FREE_SOCKET_TIMEOUT_MS,
      serverTimeouts: new WeakMap(),
    };
    const agentOptions = {
      keepAlive: true,
      maxSockets: options.maxSockets ?? DEFAULT_MAX_SOCKETS,
      maxFreeSockets: options.maxFreeSockets ?? DEFAULT_MAX_FREE_SOCKETS,
      // The connection used last is the one least likely to have been closed by the server.
      scheduling: 'lifo' as const,
    };
    this.#http = new PooledHttpAgent(agentOptions, this.#pool);
    this.#https = new PooledHttpsAgent(agentOptions, this.#pool);
  }

  /**
   * Closes the idle connections now; those in use close when their request ends instead of
   * being kept. Requests sent afterwards still work, each on a connection of its own.
   */
  close(): void {
    this.#pool.closed = true;
    for (const agent of [this.#http, this.#https]) {
      for (const sockets of Object.values(agent.freeSockets)) {
        for (const socket of sockets ?? []) socket.destroy();
      }
    }
  }

  /**
   * Sends one request; resolves with the response once its head has arrived. When a kept
   * connection turns out to have been closed by the server before any byte of an answer (the
   * keep-alive race), the request is sent once more.
   */
  async send(outgoing: Outgoing): Promise<http.IncomingMessage> {
    try {
      return await this.#attempt(outgoing, true);
    } catch (error) {
      if (!(error instanceof StaleConnectionError) || outgoing.signal.aborted) throw error;
      return this.#attempt(outgoing, false);
    }
  }

  #attempt({ url, method, headers, signal, describe }: Outgoing, mayRetry: boolean): Promise<http.IncomingMessage> {
    const hostname = normaliseHost(url.hostname);
    // An IP literal is connected to without a lookup, so it is checked here.
    if (net.isIP(hostname)) {
      const reason = checkAddress(hostname, hostname, this.#allow);
      if (reason) return Promise.reject(new RefusedError(`${describe} refused: ${reason}`));
    }
    const https_ = url.protocol === 'https:';
    const request = https_ ? https.request : http.request;
    return new Promise((resolve, reject) => {
      let req: http.ClientRequest;
      try {
        req = request({
          method,
          hostname,
          port: url.port === '' ? undefined : Number(url.port),
          path: `${url.pathname}${url.search}`,
          headers,
          agent: https_ ? this.#https : this.#http,
          signal,
          // Used by the agent only when it opens a new connection.
          lookup: this.#checkedLookup(describe),
        });
      } catch (error) {
        reject(new Error(`${describe} could not be sent: ${(error as Error).message}`));
        return;
      }
      let bytesBefore = 0;
      req.once('socket', (socket) => (bytesBefore = socket.bytesRead));
      req.once('response', (res) => {
        // Failures after the head are seen by the body reader; never an unhandled 'error'.
        res.on('error', () => {});
        this.#noteServerTimeout(res);
        resolve(res);
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (error instanceof RefusedError || signal.aborted) {
          reject(error);
          return;
        }
        const message = `${describe} failed: ${describeNetworkError(error, hostname)}`;
        const stale =
          mayRetry &&
          req.reusedSocket &&
          (error.code === 'ECONNRESET' || error.code === 'EPIPE') &&
          (req.socket?.bytesRead ?? bytesBefore) === bytesBefore;
        reject(stale ? new StaleConnectionError(message) : new Error(message));
      });
      req.end();
    });
  }

  /** Remembers how long the server said it keeps the connection open (`Keep-Alive: timeout=N`). */
  #noteServerTimeout(res: http.IncomingMessage): void {
    const seconds = /(?:^|[,;\s])timeout\s*=\s*(\d+)/i.exec(String(res.headers['keep-alive'] ?? ''))?.[1];
    if (seconds === undefined) this.#pool.serverTimeouts.delete(res.socket);
    else this.#pool.serverTimeouts.set(res.socket, Number(seconds) * 1000);
  }

  /**
   * The socket's DNS lookup: resolves every address of the host, refuses the connection when
   * any of them is refused, and hands the socket the addresses it checked.
   */
  #checkedLookup(describe: string): net.LookupFunction {
    return (hostname, options, callback) => {
      const family = options.family === 4 || options.family === 'IPv4' ? 4 : options.family === 6 || options.family === 'IPv6' ? 6 : 0;
      const checked = async () => {
        const found = await this.#lookup(hostname);
        for (const { address } of found) {
          const reason = checkAddress(hostname, address, this.#allow);
          if (reason) throw new RefusedError(`${describe} refused: ${hostname} resolves to ${address}, a ${reason}`);
        }
        const usable = found.filter((a) => family === 0 || a.family === family);
        if (usable.length === 0) {
          throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
        }
        return usable;
      };
      checked().then(
        (addresses) => {
          const [head] = addresses;
          if (options.all) callback(null, addresses);
          else callback(null, head!.address, head!.family);
        },
        (error: NodeJS.ErrnoException) => callback(error, options.all ? [] : ''),
      );
    };
  }
}

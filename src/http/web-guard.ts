// What a web page in the operator's browser must not be able to do to the service (SPEC §8),
// checked before anything else handles a request: a Host that is not ours (DNS rebinding), a
// WebSocket upgrade from another site's page, a body over MAX_BODY_BYTES, a CORS answer to an
// origin nobody listed. CSRF prevention proper is yoga's plugin (see `csrfPrevention` below).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { useCSRFPrevention } from '@graphql-yoga/plugin-csrf-prevention';
import { GraphQLError } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Config } from '../config.ts';
import {
  type AllowedHosts,
  type CorsOrigins,
  DEFAULT_LIMITS,
  DEFAULT_MAX_BODY_BYTES,
  type GraphQLLimits,
  LOOPBACK_HOSTS,
  normaliseHost,
} from './web-settings.ts';

/** The web-facing settings buildApp needs, from config.ts's settings (`webOptionsFrom`). */
export interface WebOptions {
  /** HOST: a specific address or name it binds is an allowed Host too; 0.0.0.0 and :: are not. */
  bindHost: string;
  allowedHosts: AllowedHosts;
  corsOrigins: CorsOrigins;
  tls: { certFile: string; keyFile: string } | null;
  maxBodyBytes: number;
  limits: GraphQLLimits;
  graphiql: boolean;
  introspection: boolean;
}

/** The defaults of every setting (what a test's app gets). */
export const DEFAULT_WEB: WebOptions = {
  bindHost: '127.0.0.1',
  allowedHosts: [],
  corsOrigins: [],
  tls: null,
  maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
  limits: DEFAULT_LIMITS,
  graphiql: true,
  introspection: true,
};

export function webOptionsFrom(config: Config): WebOptions {
  return {
    bindHost: config.HOST,
    allowedHosts: config.ALLOWED_HOSTS,
    corsOrigins: config.CORS_ORIGINS,
    tls: config.TLS_CERT_FILE && config.TLS_KEY_FILE ? { certFile: config.TLS_CERT_FILE, keyFile: config.TLS_KEY_FILE } : null,
    maxBodyBytes: config.MAX_BODY_BYTES,
    limits: {
      depth: config.GRAPHQL_MAX_DEPTH,
      aliases: config.GRAPHQL_MAX_ALIASES,
      directives: config.GRAPHQL_MAX_DIRECTIVES,
      tokens: config.GRAPHQL_MAX_TOKENS,
      cost: config.GRAPHQL_MAX_COST,
    },
    graphiql: config.GRAPHIQL,
    introspection: config.INTROSPECTION,
  };
}

/** Paths any Host may reach: probes of orchestrators and load balancers use whatever name they have. */
export const HOST_EXEMPT_PATHS: ReadonlySet<string> = new Set(['/health', '/health/live']);

/**
 * The headers that make a request non-simple, so that a browser sends it cross-site only after a
 * CORS preflight that the service does not grant (useCSRFPrevention's `requestHeaders`). A GET,
 * and a POST with a form or text body, run an operation only with one of them.
 */
export const CSRF_HEADERS: readonly string[] = ['x-graphql-yoga-csrf', 'authorization'];

/**
 * yoga plugins: CSRF prevention (no operation from a request a browser sends cross-site without a
 * preflight: a form post, a text/plain or multipart/form-data body, a GET without one of
 * CSRF_HEADERS; a JSON POST is preflighted, so it passes), and `Vary: Origin` when answers
 * depend on the origin.
 */
export function useWebGuards(web: Pick<WebOptions, 'corsOrigins'>): Plugin[] {
  const csrf = useCSRFPrevention({ requestHeaders: [...CSRF_HEADERS] });
  const plugins: Plugin[] = [
    {
      // yoga's check, its 403 coded and saying what to send.
      onRequestParse(payload) {
        try {
          return csrf.onRequestParse?.(payload);
        } catch (error) {
          if (error instanceof GraphQLError) {
            error.message =
              'Refused (CSRF prevention): a form post, a text/plain or multipart/form-data body, or a GET runs no operation without an X-GraphQL-Yoga-CSRF or Authorization header.';
            Object.assign(error.extensions, { code: 'CSRF_PREVENTED' });
          }
          throw error;
        }
      },
    },
  ];
  if (web.corsOrigins.length > 0) {
    plugins.push({
      onResponse: ({ response }) => {
        const vary = response.headers.get('vary');
        if (!vary?.split(/\s*,\s*/).some((v) => v.toLowerCase() === 'origin'))
          response.headers.set('vary', vary ? `${vary}, Origin` : 'Origin');
      },
    });
  }
  return plugins;
}

/** The name in a Host header, port removed, normalised (IPv6 in brackets); null when missing or malformed. */
export function hostOf(header: string | undefined): string | null {
  if (!header) return null;
  const value = header.trim();
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(value);
  return match ? normaliseHost(match[1]!.replace(/^\[(.*)\]$/, '$1')) : null;
}

/**
 * Whether a request with this Host header may be served: localhost, 127.0.0.1, [::1], the
 * address or name HOST binds (unless it binds every interface), or a name on ALLOWED_HOSTS
 * (`.example.org` allows example.org and its subdomains). A page whose DNS name was rebound to
 * this machine carries its own name, so it is refused (SPEC §8).
 */
export function isHostAllowed(header: string | undefined, web: Pick<WebOptions, 'bindHost' | 'allowedHosts'>): boolean {
  const host = hostOf(header);
  if (host === null) return false;
  if (LOOPBACK_HOSTS.includes(host)) return true;
  const bound = normaliseHost(web.bindHost);
  if (bound !== '0.0.0.0' && bound !== '[::]' && host === bound) return true;
  return web.allowedHosts.some((entry) => (entry.startsWith('.') ? host === entry.slice(1) || host.endsWith(entry) : host === entry));
}

/**
 * Whether a WebSocket upgrade with this Origin may proceed: no Origin (not a browser: graphql-ws
 * in Node, curl), this very origin (GraphiQL served by the service, also behind a proxy that
 * passes the Host on), or an origin on CORS_ORIGINS. Another site's page is refused, since a
 * browser lets any page open a WebSocket anywhere.
 */
export function isSocketOriginAllowed(
  origin: string | undefined,
  hostHeader: string | undefined,
  web: Pick<WebOptions, 'corsOrigins'>,
): boolean {
  if (origin === undefined) return true;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed frame, a file:// page) included
  }
  if (web.corsOrigins.includes(url.origin)) return true;
  return hostHeader !== undefined && url.host === hostHeader.trim().toLowerCase();
}

/**
 * yoga's `cors` option: CORS headers only for an origin on CORS_ORIGINS, and then exactly for it
 * (no credentials: tokens travel in the Authorization header, not in cookies). Any other origin
 * gets none, so its page cannot read an answer; a preflight from it is answered 204 with none.
 */
export function corsFor(origins: CorsOrigins) {
  return (request: Request) => {
    const origin = request.headers.get('origin');
    if (origin === null || !origins.includes(origin)) return false as const;
    return {
      origin: [origin],
      methods: ['GET', 'POST'],
      allowedHeaders: ['content-type', 'accept', ...CSRF_HEADERS],
      credentials: false,
      maxAge: 600,
    };
  };
}

/**
 * Reads a request's body up to `max` bytes. Resolves with it, or with null when it is larger:
 * the rest is then read and dropped (so the client, still sending, gets the 413 rather than a
 * reset), up to a bound past which the connection is cut. A client that goes away meanwhile gets null too.
 */
export function readBody(req: IncomingMessage, max: number): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length'] ?? NaN);
    const discardBound = max + Math.max(max, 16 * 1024 * 1024);
    if (declared > discardBound) {
      req.resume();
      return resolve(null);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = declared > max;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) over = true;
      if (!over) chunks.push(chunk);
      if (size > discardBound) {
        req.removeAllListeners('data');
        req.resume();
        resolve(null);
      }
    });
    req.once('end', () => resolve(over ? null : Buffer.concat(chunks, size)));
    // A client gone before the end of its body (an 'error' of an aborted request, or a 'close'):
    // nothing to answer; the 413 then goes nowhere.
    req.once('error', () => resolve(null));
    req.once('close', () => {
      if (!req.complete) resolve(null);
    });
  });
}

/** HTTP 413 for a body over MAX_BODY_BYTES, as a GraphQL-shaped error; the connection is not reused. */
export function sendTooLarge(res: ServerResponse, max: number): void {
  const body = {
    errors: [{ message: `The request body is larger than MAX_BODY_BYTES (${max} bytes).`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }],
  };
  res.writeHead(413, { 'content-type': 'application/json', connection: 'close' }).end(JSON.stringify(body));
}

/** HTTP 403 for a Host not on the allow-list, saying which setting allows it. */
export function sendHostRefused(res: ServerResponse, header: string | undefined): void {
  const host = hostOf(header) ?? '(none)';
  const body = {
    errors: [
      {
        message: `Host "${host.slice(0, 253)}" is not allowed: only localhost, 127.0.0.1, [::1], HOST and the names on ALLOWED_HOSTS are served (DNS rebinding protection).`,
        extensions: { code: 'FORBIDDEN_HOST' },
      },
    ],
  };
  res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { checkAddress, normaliseHost, type AllowList } from './address-policy.ts';
import { CallTimeoutError, type CallContext, type Connector } from './types.ts';

export interface HttpConnectorConfig {
  id: string;
  baseUrl: string;
  headers: { name: string; value: string }[];
  /** BEARER: the secret is the token; BASIC: the secret is `user:password`. */
  authScheme: 'BEARER' | 'BASIC' | null;
  secret: string | null;
  timeoutSeconds: number | null;
}

/** Resolves a host name to all its addresses (injectable for tests). */
export type HostLookup = (hostname: string) => Promise<{ address: string; family: number }[]>;

export interface HttpConnectorOptions {
  /** `HTTP_CONNECTOR_ALLOW_HOSTS`, parsed. */
  allow: AllowList;
  /** How much of a response body is read at most (default 64 KiB); the rest is never received. */
  maxBodyBytes?: number;
  lookup?: HostLookup;
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const EXCERPT_CHARS = 500;
const URL_CHARS = 300;
/** Secrets shorter than this are not searched for in messages: it would mangle them for nothing. */
const MIN_REDACTED_LENGTH = 4;
const REDACTED = '[redacted]';
const USER_AGENT = 'server-jobs';
/** Framing and hop-by-hop headers the connector sets itself (or never sends). */
const IGNORED_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer']);

const defaultLookup: HostLookup = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true });

/**
 * Checks a connector's base URL: an absolute http or https URL with no credentials, query or
 * fragment. Returns it normalised (WHATWG serialisation, no trailing slash); throws an Error
 * saying what is wrong otherwise. The message never repeats the URL (it might carry a password).
 */
export function validateBaseUrl(text: string): string {
  const trimmed = text.trim();
  if (trimmed === '') throw new Error('baseUrl is empty');
  if (trimmed.length > 2000) throw new Error('baseUrl is too long (more than 2000 characters)');
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new Error('baseUrl is not an absolute URL: it must start with http:// or https://');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error('baseUrl must start with http:// or https://');
  }
  if (url.username !== '' || url.password !== '') {
    throw new Error('baseUrl must not contain a user name or password: use the connector secret with authScheme BASIC');
  }
  if (url.search !== '' || url.hash !== '' || /[?#]/.test(url.href)) {
    throw new Error('baseUrl must not have a query (?…) or a fragment (#…)');
  }
  if (url.hostname === '') throw new Error('baseUrl has no host');
  return url.href.replace(/\/+$/, '');
}

/** Thrown when the address policy refuses a destination. */
class RefusedError extends Error {}

/** The internal abort, told apart from every other failure. */
class AbortedError extends Error {}

/** A URL as messages show it: no credentials, no fragment, bounded. */
function show(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  copy.hash = '';
  return bound(copy.href, URL_CHARS);
}

const bound = (text: string, max: number) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** One line of printable text. */
const oneLine = (text: string) => text.replace(/\p{Cc}+/gu, ' ').replace(/\s+/g, ' ').trim();

/**
 * Calls `POST {baseUrl}/{method}` with an empty body (SPEC §4), under the address policy of
 * SPEC §8: only http/https; private, loopback and other special addresses only when allow-listed;
 * link-local and cloud-metadata addresses never; every redirect hop checked the same way; the
 * response body read up to a bound. The address checked is the address connected to: the check
 * runs inside the socket's own DNS lookup, so a DNS answer cannot change in between.
 */
export class HttpConnector implements Connector {
  readonly id: string;
  readonly kind = 'HTTP' as const;
  readonly builtIn = false;
  readonly #config: HttpConnectorConfig;
  readonly #allow: AllowList;
  readonly #maxBodyBytes: number;
  readonly #lookup: HostLookup;
  /** The normalised base URL, or why the configured one is unusable (reported by each call). */
  readonly #base: { url: string } | { problem: string };
  readonly #secrets: string[];

  constructor(config: HttpConnectorConfig, options: HttpConnectorOptions) {
    this.id = config.id;
    this.#config = config;
    this.#allow = options.allow;
    this.#maxBodyBytes = Math.max(0, Math.floor(options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES));
    this.#lookup = options.lookup ?? defaultLookup;
    try {
      this.#base = { url: validateBaseUrl(config.baseUrl) };
    } catch (error) {
      this.#base = { problem: `Connector ${config.id} has an unusable baseUrl: ${(error as Error).message}` };
    }
    this.#secrets = secretForms(config);
  }

  hasMethod(_method: string): boolean | undefined {
    return undefined;
  }

  methods(): string[] | null {
    return null;
  }

  async call(method: string, ctx: CallContext): Promise<unknown> {
    try {
      await this.#call(method, ctx);
      return undefined;
    } catch (error) {
      // Fresh objects with nothing but a message, and that message scrubbed of the secret.
      const message = this.#redact(error instanceof Error ? error.message : String(error));
      throw error instanceof CallTimeoutError ? new CallTimeoutError(message) : new Error(message);
    }
  }

  async #call(method: string, ctx: CallContext): Promise<void> {
    if ('problem' in this.#base) throw new Error(this.#base.problem);
    if (method === '' || method === '.' || method === '..') {
      throw new Error(`Method name ${JSON.stringify(method)} cannot be a URL path segment`);
    }
    let segment: string;
    try {
      segment = encodeURIComponent(method);
    } catch {
      throw new Error('Method name is not valid Unicode (a lone surrogate)');
    }
    const first = new URL(`${this.#base.url}/${segment}`);
    const baseOrigin = first.origin;
    const configured = this.#configuredHeaders();
    const auth = this.#authorization();
    const what = `POST ${show(first)}`;

    const abort = new AbortController();
    let timedOut = false;
    const onAbort = () => abort.abort();
    if (ctx.signal.aborted) throw new Error(`${what} not sent: the run was stopped`);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const seconds = this.#config.timeoutSeconds;
    const timer =
      seconds !== null && Number.isFinite(seconds) && seconds > 0
        ? setTimeout(() => {
            timedOut = true;
            abort.abort();
          }, seconds * 1000)
        : null;

    try {
      let url = first;
      let httpMethod: 'POST' | 'GET' = 'POST';
      let sameOrigin = true;
      for (let redirects = 0; ; redirects++) {
        const describe = redirects === 0 ? what : `redirect to ${show(url)}`;
        const headers: Record<string, string> = {
          ...(sameOrigin ? configured : {}),
          'user-agent': USER_AGENT,
          'x-job-id': ctx.jobId,
          'x-run-id': ctx.runId,
          'x-scheduled-at': ctx.scheduledAt.toISOString(),
        };
        if (sameOrigin && auth) headers['authorization'] = auth;
        if (httpMethod === 'POST') headers['content-length'] = '0';

        const res = await this.#send(url, httpMethod, headers, abort.signal, describe);
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(status) && location) {
          res.destroy();
          if (redirects === MAX_REDIRECTS) throw new Error(`${what}: too many redirects (more than ${MAX_REDIRECTS})`);
          let next: URL;
          try {
            next = new URL(location, url);
          } catch {
            throw new Error(`${describe} answered ${status} with an invalid Location header`);
          }
          if (next.protocol !== 'http:' && next.protocol !== 'https:') {
            throw new Error(`redirect to ${show(next)} refused: only http and https are allowed`);
          }
          if (next.username !== '' || next.password !== '') {
            throw new Error(`redirect to ${show(next)} refused: the URL carries credentials`);
          }
          next.hash = '';
          // As fetch does: 303 turns into GET, and so do 301/302 after a POST; 307/308 keep it.
          if (status === 303 || status === 301 || status === 302) httpMethod = 'GET';
          // Credentials and configured headers never follow a redirect to another origin.
          sameOrigin = sameOrigin && next.origin === baseOrigin;
          url = next;
          continue;
        }

        const body = await readBounded(res, this.#maxBodyBytes, abort.signal);
        if (status >= 200 && status < 300) return;
        const statusText = oneLine(bound(res.statusMessage || http.STATUS_CODES[status] || '', 100));
        const after = redirects > 0 ? ` (after ${redirects} redirect${redirects > 1 ? 's' : ''} from ${what})` : '';
        throw new Error(
          `HTTP ${status}${statusText ? ` ${statusText}` : ''} from ${httpMethod} ${show(url)}${after}: ${this.#excerpt(body)}`,
        );
      }
    } catch (error) {
      if (timedOut) throw new CallTimeoutError(`No answer from ${what} within ${seconds} s`);
      if (ctx.signal.aborted) throw new Error(`${what} aborted: the run was stopped`);
      throw error;
    } finally {
      if (timer) clearTimeout(timer);
      ctx.signal.removeEventListener('abort', onAbort);
    }
  }

  /** Sends one request; resolves with the response once its head has arrived. */
  #send(
    url: URL,
    method: 'POST' | 'GET',
    headers: Record<string, string>,
    signal: AbortSignal,
    describe: string,
  ): Promise<http.IncomingMessage> {
    const hostname = normaliseHost(url.hostname);
    // An IP literal is connected to without a lookup, so it is checked here.
    if (net.isIP(hostname)) {
      const reason = checkAddress(hostname, hostname, this.#allow);
      if (reason) return Promise.reject(new RefusedError(`${describe} refused: ${reason}`));
    }
    const request = url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      let req: http.ClientRequest;
      try {
        req = request({
          method,
          hostname,
          port: url.port === '' ? undefined : Number(url.port),
          path: `${url.pathname}${url.search}`,
          headers,
          // A connection of its own per call: nothing pooled outlives the call.
          agent: false,
          signal,
          lookup: this.#checkedLookup(describe),
        });
      } catch (error) {
        reject(new Error(`${describe} could not be sent: ${(error as Error).message}`));
        return;
      }
      req.once('response', (res) => {
        // Failures after the head are seen by the body reader; never an unhandled 'error'.
        res.on('error', () => {});
        resolve(res);
      });
      req.on('error', (error) => {
        if (error instanceof RefusedError || signal.aborted) reject(error);
        else reject(new Error(`${describe} failed: ${describeNetworkError(error, hostname)}`));
      });
      req.end();
    });
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

  /** The configured headers (lower-cased names), checked; values never appear in messages. */
  #configuredHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const { name, value } of this.#config.headers) {
      const shown = JSON.stringify(bound(name, 100));
      try {
        http.validateHeaderName(name);
      } catch {
        throw new Error(`Connector ${this.id}: header name ${shown} is not a valid HTTP header name`);
      }
      try {
        http.validateHeaderValue(name, value);
      } catch {
        throw new Error(`Connector ${this.id}: the value of header ${shown} has characters HTTP does not allow`);
      }
      const key = name.toLowerCase();
      if (!IGNORED_HEADERS.has(key)) headers[key] = value;
    }
    return headers;
  }

  #authorization(): string | null {
    const { authScheme, secret } = this.#config;
    if (authScheme === null) return null;
    if (secret === null || secret === '') throw new Error(`Connector ${this.id} has authScheme ${authScheme} but no secret`);
    if (authScheme === 'BEARER') return `Bearer ${secret}`;
    return `Basic ${Buffer.from(secret, 'utf8').toString('base64')}`;
  }

  /**
   * A bounded, one-line excerpt of a body, with the secret removed before it is cut and any start
   * of it left at the cut removed after.
   */
  #excerpt({ body, truncated }: { body: Buffer; truncated: boolean }): string {
    if (body.length === 0) return truncated ? '(body cut short)' : '(empty body)';
    const text = oneLine(this.#redact(body.toString('utf8')));
    const cut = text.length > EXCERPT_CHARS;
    return `${this.#redactTail(cut ? text.slice(0, EXCERPT_CHARS) : text)}${cut || truncated ? '…' : ''}`;
  }

  #redact(text: string): string {
    let out = text;
    for (const secret of this.#secrets) out = out.split(secret).join(REDACTED);
    return out;
  }

  /** Removes the start of a secret left at the end of a cut text. */
  #redactTail(text: string): string {
    for (const secret of this.#secrets) {
      for (let k = secret.length - 1; k >= MIN_REDACTED_LENGTH; k--) {
        if (text.endsWith(secret.slice(0, k))) return text.slice(0, text.length - k) + REDACTED;
      }
    }
    return text;
  }
}

/** Every form in which the secret could come back in a message (echoed headers, URLs, bodies). */
function secretForms(config: HttpConnectorConfig): string[] {
  const { secret } = config;
  if (!secret) return [];
  const forms = [secret, Buffer.from(secret, 'utf8').toString('base64'), encodeURIComponentSafe(secret)];
  if (config.authScheme === 'BASIC' && secret.includes(':')) {
    const password = secret.slice(secret.indexOf(':') + 1);
    forms.push(password, encodeURIComponentSafe(password));
  }
  // Longest first, so a form containing another is replaced whole.
  return [...new Set(forms)].filter((f) => f.length >= MIN_REDACTED_LENGTH).sort((a, b) => b.length - a.length);
}

function encodeURIComponentSafe(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Reads at most `max` bytes of a body; past that the response (and its socket) is destroyed.
 * `truncated` says the body had more (or was cut short by the connection).
 */
function readBounded(res: http.IncomingMessage, max: number, signal: AbortSignal): Promise<{ body: Buffer; truncated: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    let ended = false;
    const finish = () => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', finish);
      if (signal.aborted) {
        res.destroy();
        reject(new AbortedError('aborted'));
      } else {
        resolve({ body: Buffer.concat(chunks), truncated: !ended });
      }
    };
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      if (size + chunk.length > max) {
        chunks.push(chunk.subarray(0, max - size));
        size = max;
        res.destroy();
        finish();
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
    });
    res.on('end', () => {
      ended = true;
      finish();
    });
    // A body cut short (reset, closed) still yields what arrived.
    res.on('close', finish);
    res.on('error', finish);
    if (signal.aborted) finish();
    else signal.addEventListener('abort', finish, { once: true });
  });
}

type NetError = NodeJS.ErrnoException & { address?: string; port?: number; errors?: unknown[] };

/** A short, clear description of a connection failure. */
function describeNetworkError(thrown: unknown, host: string): string {
  const error = thrown as NetError;
  // With several addresses, Node tries each and reports them together.
  if (Array.isArray(error.errors) && error.errors.length > 0) {
    const parts = [...new Set(error.errors.map((e) => describeNetworkError(e, host)))];
    return parts.join('; ');
  }
  const where = error.address !== undefined ? `${error.address.includes(':') ? `[${error.address}]` : error.address}${error.port !== undefined ? `:${error.port}` : ''}` : host;
  switch (error.code) {
    case 'ECONNREFUSED':
      return `connection refused by ${where}`;
    case 'ECONNRESET':
      return error.message === 'socket hang up' ? 'the server closed the connection without an answer' : `connection reset by ${where}`;
    case 'ENOTFOUND':
      return `host ${host} not found`;
    case 'EAI_AGAIN':
      return `host ${host} could not be resolved (temporary DNS failure)`;
    case 'ETIMEDOUT':
      return `connection to ${where} timed out`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${where} is unreachable`;
    default:
      return bound(oneLine(`${error.code ? `${error.code}: ` : ''}${error.message ?? String(thrown)}`), 300);
  }
}

import type { AuthScheme } from '../db/rows.ts';
import http from 'node:http';
import type { AllowList } from './address-policy.ts';
import { bound, encodeURIComponentSafe, excerpt, oneLine, redact, secretForms } from './http-redaction.ts';
import { readBounded } from './http-response.ts';
import { HttpTransport, type HostLookup } from './http-transport.ts';
import { CallTimeoutError, type CallContext, type Connector } from './types.ts';

export type { HostLookup } from './http-transport.ts';

export interface HttpConnectorConfig {
  id: string;
  baseUrl: string;
  headers: { name: string; value: string }[];
  /** BEARER: the secret is the token; BASIC: the secret is `user:password`. */
  authScheme: AuthScheme | null;
  secret: string | null;
  /** Why the stored secret could not be decrypted (SECRETS_KEY): every call fails with this. */
  secretProblem?: string;
  timeoutSeconds: number | null;
}

export interface HttpConnectorOptions {
  /** `HTTP_CONNECTOR_ALLOW_HOSTS`, parsed. */
  allow: AllowList;
  /** How much of a response body is read at most (default 64 KiB); the rest is never received. */
  maxBodyBytes?: number;
  lookup?: HostLookup;
  /** Connections open at once per target (default 8). */
  maxSockets?: number;
  /** How long an idle connection is kept for the next call (default 4 s). */
  freeSocketTimeoutMs?: number;
}

export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const URL_CHARS = 300;
const USER_AGENT = 'server-jobs';
/** Framing and hop-by-hop headers the connector sets itself (or never sends). */
const IGNORED_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer']);

/**
 * Why a configured header value cannot be stored, or null when it can: header values are
 * printable ASCII (0x20–0x7E), so that what is sent is byte for byte what was configured
 * (SPEC §4). The message never repeats the value, which often holds a key.
 */
export function headerValueProblem(value: string): string | null {
  const bad = /[^\x20-\x7E]/u.exec(value);
  if (!bad) return null;
  const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
  return `has a character outside printable ASCII (U+${code} at position ${[...value.slice(0, bad.index)].length + 1}); header values must be ASCII characters 0x20–0x7E (percent-encode or base64 other text)`;
}

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

/** A URL as messages show it: no credentials, no fragment, bounded. */
function show(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  copy.hash = '';
  return bound(copy.href, URL_CHARS);
}

/**
 * Calls `POST {baseUrl}/{method}` with an empty body (SPEC §4), under the address policy of
 * SPEC §8 (only http/https; private, loopback and other special addresses only when
 * allow-listed; link-local and cloud-metadata addresses never; every redirect hop checked the
 * same way; the response body read up to a bound). Its connections are kept alive and reused
 * between calls by a transport of its own, closed by `close()` when the connector is replaced.
 */
export class HttpConnector implements Connector {
  readonly id: string;
  readonly kind = 'HTTP' as const;
  readonly builtIn = false;
  readonly #config: HttpConnectorConfig;
  readonly #maxBodyBytes: number;
  readonly #transport: HttpTransport;
  /** The normalised base URL, or why the configured one is unusable (reported by each call). */
  readonly #base: { url: string } | { problem: string };
  readonly #secrets: string[];

  constructor(config: HttpConnectorConfig, options: HttpConnectorOptions) {
    this.id = config.id;
    this.#config = config;
    this.#maxBodyBytes = Math.max(0, Math.floor(options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES));
    this.#transport = new HttpTransport({
      allow: options.allow,
      lookup: options.lookup,
      maxSockets: options.maxSockets,
      freeSocketTimeoutMs: options.freeSocketTimeoutMs,
    });
    try {
      this.#base = { url: validateBaseUrl(config.baseUrl) };
    } catch (error) {
      this.#base = { problem: `Connector ${config.id} has an unusable baseUrl: ${(error as Error).message}` };
    }
    this.#secrets = secretForms(config.secret, config.authScheme);
  }

  hasMethod(_method: string): boolean | undefined {
    return undefined;
  }

  methods(): string[] | null {
    return null;
  }

  /** Closes the kept connections (those in use close when their call ends). */
  close(): void {
    this.#transport.close();
  }

  async call(method: string, ctx: CallContext): Promise<unknown> {
    try {
      await this.#call(method, ctx);
      return undefined;
    } catch (error) {
      // Fresh objects with nothing but a message, and that message scrubbed of the secret.
      const message = redact(error instanceof Error ? error.message : String(error), this.#secrets);
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
    // Header values are ASCII: the job id (any letters) travels percent-encoded as UTF-8.
    const runHeaders = {
      'user-agent': USER_AGENT,
      'x-job-id': encodeURIComponentSafe(ctx.jobId),
      'x-run-id': ctx.runId,
      'x-scheduled-at': ctx.scheduledAt.toISOString(),
    };

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
        const headers: Record<string, string> = { ...(sameOrigin ? configured : {}), ...runHeaders };
        if (sameOrigin && auth) headers['authorization'] = auth;
        if (httpMethod === 'POST') headers['content-length'] = '0';

        const res = await this.#transport.send({ url, method: httpMethod, headers, signal: abort.signal, describe });
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
          `HTTP ${status}${statusText ? ` ${statusText}` : ''} from ${httpMethod} ${show(url)}${after}: ${excerpt(body, this.#secrets)}`,
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

  /**
   * The configured headers (lower-cased names). The API refuses what HTTP cannot carry when a
   * connector is saved; this check remains for rows stored before it did. Values never appear
   * in messages.
   */
  #configuredHeaders(): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const { name, value } of this.#config.headers) {
      const shown = JSON.stringify(bound(name, 100));
      try {
        http.validateHeaderName(name);
      } catch {
        throw new Error(`Connector ${this.id}: header name ${shown} is not a valid HTTP header name; change it with updateConnector`);
      }
      try {
        http.validateHeaderValue(name, value);
      } catch {
        throw new Error(
          `Connector ${this.id}: the value of header ${shown} has characters HTTP does not allow; change it with updateConnector`,
        );
      }
      const key = name.toLowerCase();
      if (!IGNORED_HEADERS.has(key)) headers[key] = value;
    }
    return headers;
  }

  /** The Authorization header; a BASIC credential is base64 of its UTF-8 bytes (RFC 7617). */
  #authorization(): string | null {
    const { authScheme, secret, secretProblem } = this.#config;
    if (authScheme === null) return null;
    if (secretProblem) throw new Error(secretProblem);
    if (secret === null || secret === '') throw new Error(`Connector ${this.id} has authScheme ${authScheme} but no secret`);
    if (authScheme === 'BEARER') return `Bearer ${secret}`;
    return `Basic ${Buffer.from(secret, 'utf8').toString('base64')}`;
  }
}

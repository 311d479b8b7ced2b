import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { type AuthTokens, authTokens } from './auth/settings.ts';
import { type AllowList, EMPTY_ALLOW_LIST, parseAllowList } from './connectors/address-policy.ts';
import { DEFAULT_LIMITS, DEFAULT_MAX_BODY_BYTES, parseAllowedHosts, parseCorsOrigins, tlsProblem } from './http/web-settings.ts';
import { unknownSettingProblems } from './setting-names.ts';
import { parseSecretKey } from './connectors/secret-box.ts';
import { parseTimeOfDay } from './housekeeping/schedule.ts';

/** pino's levels, for the service's own output (not the job log's levels). */
const PINO_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** Settings whose values may hold a secret: never echoed in a message (SPEC §8). */
const SECRET_SETTINGS: ReadonlySet<string> = new Set<Setting>(['DATABASE_URL', 'AUTH_TOKENS', 'SECRETS_KEY', 'SECRETS_KEY_PREVIOUS']);

/**
 * A host name: dot-separated labels of 1–63 letters, digits, hyphens (RFC 1123) or underscores
 * (container names have them), at most 253 characters, the last label not all digits (so that
 * 10.0.0.256 is a bad address, not a name).
 */
const HOST_NAME = /^(?=.{1,253}\.?$)(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?$/;
const isHost = (host: string) => net.isIP(host) !== 0 || (HOST_NAME.test(host) && !/(^|\.)\d+\.?$/.test(host));

const SECRETS_KEY_FORMAT = 'must be 32 random bytes in base64 (e.g. the output of `openssl rand -base64 32`)';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
/** A comma-separated list, parsed once here; the parser's message names the bad entry. */
const listOf = <T>(parse: (value: string | undefined) => T) =>
  z
    .string()
    .optional()
    .transform((value, ctx) => {
      try {
        return parse(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });
const flag = (fallback: boolean) =>
  z
    .stringbool({ truthy: ['true', '1', 'yes', 'on'], falsy: ['false', '0', 'no', 'off'], error: 'must be true or false' })
    .default(fallback);
const schema = z.object({
  PORT: int(0, 65535).default(4000),
  HOST: z
    .string()
    .refine(isHost, 'must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::) or a host name, with no port or brackets')
    .optional(),
  // The web-facing hardening of SPEC §8 (src/http/web-settings.ts, src/http/web-guard.ts, src/graphql/limits.ts).
  ALLOWED_HOSTS: listOf(parseAllowedHosts),
  CORS_ORIGINS: listOf(parseCorsOrigins),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  MAX_BODY_BYTES: int(1024, 1024 ** 3).default(DEFAULT_MAX_BODY_BYTES),
  GRAPHQL_MAX_DEPTH: int(1, 1000).default(DEFAULT_LIMITS.depth),
  GRAPHQL_MAX_ALIASES: int(0, 100_000).default(DEFAULT_LIMITS.aliases),
  GRAPHQL_MAX_DIRECTIVES: int(0, 100_000).default(DEFAULT_LIMITS.directives),
  GRAPHQL_MAX_TOKENS: int(100, 10_000_000).default(DEFAULT_LIMITS.tokens),
  GRAPHQL_MAX_COST: int(1, 1_000_000_000).default(DEFAULT_LIMITS.cost),
  GRAPHIQL: flag(true),
  INTROSPECTION: flag(true),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .superRefine((url, ctx) => {
      const problem = databaseUrlProblem(url);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  EMBEDDED_PG_PORT: int(1, 65535)
    .refine((port) => port !== 5432, 'must not be 5432, which the machine’s own PostgreSQL may hold')
    .optional(),
  SERVER_OPERATIONS_DIR: z
    .string()
    .min(1)
    .default('./operations')
    .superRefine((dir, ctx) => {
      const problem = directoryProblem(dir);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  // Worker threads that run server operations (SPEC §8); default: one per core.
  SERVER_OPERATIONS_WORKERS: int(1, 64).default(Math.min(64, os.availableParallelism())),
  INSTANCE_ID: z.string().min(1).max(200).default(`${os.hostname()}-${process.pid}`),
  LEASE_SECONDS: int(2, 3600).default(15),
  SHUTDOWN_GRACE_SECONDS: int(0, 3600).default(10),
  // Days of history kept (SPEC §4); 0 keeps forever.
  LOG_RETENTION_DAYS: int(0, 36500).default(30),
  RUN_RETENTION_DAYS: int(0, 36500).default(30),
  // When the daily housekeeping runs, in UTC (src/housekeeping/).
  HOUSEKEEPING_AT: z
    .string()
    .default('02:30')
    .transform((text, ctx) => {
      const at = parseTimeOfDay(text);
      if (at) return at;
      ctx.addIssue({ code: 'custom', message: 'must be a time of day in UTC as HH:MM, from 00:00 to 23:59 (e.g. 02:30)' });
      return z.NEVER;
    }),
  LOG_LEVEL: z.enum(PINO_LEVELS).default('info'),
  AUTH_TOKENS: z.string().optional(),
  AUTH_TOKENS_FILE: z.string().optional(),
  HTTP_CONNECTOR_ALLOW_HOSTS: z.string().optional(),
  // Connector secrets at rest (SPEC §8): AES-256-GCM keys, 32 bytes in base64.
  SECRETS_KEY: z
    .string()
    .refine((text) => parseSecretKey(text) !== null, SECRETS_KEY_FORMAT)
    .optional(),
  SECRETS_KEY_PREVIOUS: z
    .string()
    .refine((text) => parseSecretKey(text) !== null, SECRETS_KEY_FORMAT)
    .optional(),
});

/** The name of a setting: a key of the schema above, the one list of settings. */
export type Setting = keyof typeof schema.shape;

/**
 * The names of every setting, in the schema's order: process helpers (tests, chaos) keep them all
 * out of a child's inherited environment, and a test checks .env.example and the README list them.
 */
export const SETTINGS = Object.keys(schema.shape) as readonly Setting[];

/** The settings, typed; `HTTP_CONNECTOR_ALLOW_HOSTS` and `HOUSEKEEPING_AT` come parsed, once, here. */
export type Config = Readonly<
  Omit<z.infer<typeof schema>, 'HOST' | 'AUTH_TOKENS' | 'AUTH_TOKENS_FILE' | 'HTTP_CONNECTOR_ALLOW_HOSTS'> & {
    HOST: string;
    /** The API tokens (SPEC §8), from AUTH_TOKENS or AUTH_TOKENS_FILE; none: auth is off. */
    AUTH_TOKENS: AuthTokens;
    /** The tokens file, absolute, when tokens come from it (it is watched). */
    AUTH_TOKENS_FILE: string | undefined;
    HTTP_CONNECTOR_ALLOW_HOSTS: AllowList;
  }
>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Environment → typed, frozen config. Lists every bad value at once. Nothing else reads
 * process.env. A setting the service cannot honour stops the start (SPEC §8): a bad token line,
 * or both AUTH_TOKENS and AUTH_TOKENS_FILE, never leaves the API open.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "not set", as in most .env files.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = schema.safeParse(present);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const name = String(issue.path[0]);
        return `${issue.path.join('.')}: ${issue.message} ${shown(name, present[name])}`;
      });
  const auth = authTokens(present['AUTH_TOKENS'], present['AUTH_TOKENS_FILE']);
  problems.push(...auth.problems);
  if (present['SECRETS_KEY_PREVIOUS'] !== undefined && present['SECRETS_KEY'] === undefined) {
    problems.push('SECRETS_KEY_PREVIOUS: is only used with SECRETS_KEY (the new key); set SECRETS_KEY too, or unset SECRETS_KEY_PREVIOUS.');
  }
  const tls = tlsProblem(present['TLS_CERT_FILE'], present['TLS_KEY_FILE']);
  if (tls) problems.push(tls);
  // A misspelt setting (AUTH_TOKEN_FILE) would otherwise be ignored, and the service run more open.
  problems.push(...unknownSettingProblems(present, SETTINGS));
  let allow = EMPTY_ALLOW_LIST;
  try {
    allow = parseAllowList(present['HTTP_CONNECTOR_ALLOW_HOSTS']);
  } catch (error) {
    // Its message quotes the bad entry.
    problems.push(
      looksLikeCredentials(present['HTTP_CONNECTOR_ALLOW_HOSTS'] ?? '')
        ? `HTTP_CONNECTOR_ALLOW_HOSTS: must list host names, IP addresses or CIDR ranges ${shown('HTTP_CONNECTOR_ALLOW_HOSTS', present['HTTP_CONNECTOR_ALLOW_HOSTS'])}`
        : (error as Error).message,
    );
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  // With no tokens the API is open, so it listens on loopback unless HOST says otherwise.
  return Object.freeze({
    ...parsed.data,
    HOST: parsed.data.HOST ?? '127.0.0.1',
    AUTH_TOKENS: auth.tokens,
    AUTH_TOKENS_FILE: auth.file,
    HTTP_CONNECTOR_ALLOW_HOSTS: allow,
  });
}

/** How a bad value is quoted in its message: not at all when it may hold a secret. */
function shown(name: string, value: string | undefined): string {
  if (value === undefined) return '(not set: the default)';
  if (SECRET_SETTINGS.has(name)) return '(its value is not shown: it may hold a secret)';
  if (looksLikeCredentials(value)) return '(its value is not shown: it looks like it holds a password)';
  return `(got ${JSON.stringify(value)})`;
}

/** A password in a setting not meant for one (`scheme://user:password@…`, `user:password@host`). */
const looksLikeCredentials = (value: string) => /(^|[/,\s])[^/@\s,]*:[^/@\s,]*@/.test(value);

/**
 * Why postgres.js (3.4.9) could not read this URL, or null. It takes the URL apart as this
 * does (WHATWG URL, then percent-decoding of the host list, user name and password), and its
 * own errors would quote the URL, password included; this message never does.
 */
function databaseUrlProblem(url: string): string | null {
  try {
    const hosts = url.slice(url.indexOf('://') + 3).split(/[?/]/)[0]!;
    const host = decodeURIComponent(hosts.slice(hosts.indexOf('@') + 1));
    const parsed = new URL(url.replace(host, host.split(',')[0]!));
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
    return null;
  } catch (error) {
    const reason = error instanceof URIError ? 'a bad %-escape' : 'not a valid URL';
    return `cannot be read as a URL (${reason}): check its host and port, and percent-encode any of : / ? # [ ] @ % and spaces in the user name and password`;
  }
}

/** Why `dir` is not a directory the service can read operation modules from, or null. */
function directoryProblem(dir: string): string | null {
  const absolute = path.resolve(dir);
  try {
    if (!fs.statSync(absolute).isDirectory()) return `${absolute} is not a directory`;
    fs.accessSync(absolute, fs.constants.R_OK | fs.constants.X_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `no such directory: ${absolute}`;
    if (code === 'EACCES') return `directory ${absolute} cannot be read by this user`;
    return `directory ${absolute} cannot be used (${code ?? String(error)})`;
  }
}

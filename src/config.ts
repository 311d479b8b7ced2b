import os from 'node:os';
import { z } from 'zod';
import { parseAllowList } from './connectors/address-policy.ts';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const schema = z.object({
  PORT: int(0, 65535).default(4000),
  HOST: z.string().min(1).optional(),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
    .optional(),
  DATA_DIR: z.string().min(1).default('./data'),
  EMBEDDED_PG_PORT: int(1, 65535)
    .refine((port) => port !== 5432, 'must not be 5432, which the machine’s own PostgreSQL may hold')
    .optional(),
  SERVER_OPERATIONS_DIR: z.string().min(1).default('./operations'),
  INSTANCE_ID: z.string().min(1).max(200).default(`${os.hostname()}-${process.pid}`),
  LEASE_SECONDS: int(2, 3600).default(15),
  SHUTDOWN_GRACE_SECONDS: int(0, 3600).default(10),
  LOG_RETENTION_DAYS: int(1, 36500).default(30),
  RUN_RETENTION_DAYS: int(1, 36500).default(30),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  AUTH_TOKENS: z.string().optional(),
  HTTP_CONNECTOR_ALLOW_HOSTS: z.string().optional(),
});

export type Config = Readonly<
  Omit<z.infer<typeof schema>, 'HOST' | 'AUTH_TOKENS'> & { HOST: string; AUTH_TOKENS: undefined }
>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Environment → typed, frozen config. Lists every bad value at once. Nothing else reads
 * process.env. A setting the service cannot honour stops the start (SPEC §8): token auth is not
 * built yet, so AUTH_TOKENS is refused rather than silently ignored.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "not set", as in most .env files.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ''));
  const parsed = schema.safeParse(present);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message} (got ${JSON.stringify(present[String(issue.path[0])])})`);
  if (present['AUTH_TOKENS'] !== undefined) {
    problems.push('AUTH_TOKENS: token authentication is not available in this build; unset it rather than run unprotected.');
  }
  try {
    parseAllowList(present['HTTP_CONNECTOR_ALLOW_HOSTS']);
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  // With no tokens the API is open, so it listens on loopback unless HOST says otherwise.
  return Object.freeze({ ...parsed.data, HOST: parsed.data.HOST ?? '127.0.0.1', AUTH_TOKENS: undefined });
}

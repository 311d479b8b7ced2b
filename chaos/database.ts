// The PostgreSQL a chaos run uses: an embedded server the harness starts (and can restart, for
// the database-restart scenario), or a server given by URL. Each scenario gets a fresh database.
import fs from 'node:fs/promises';
import path from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';

export interface ChaosServer {
  /** A URL of the server (any database on it). */
  readonly url: string;
  /** True when the harness owns the server and can restart it. */
  readonly restartable: boolean;
  /** Stops the server, keeps it down for `downMs`, starts it again on the same port and data. */
  restart(downMs: number): Promise<void>;
  stop(): Promise<void>;
}

const silent = { info() {}, warn() {} };

/** Starts an embedded PostgreSQL in `dir` (created, and kept after stop so that it can be inspected). */
export async function startChaosPostgres(dir: string): Promise<ChaosServer> {
  await fs.mkdir(dir, { recursive: true });
  // As root, the server runs as the user postgres, which must be able to reach its directory.
  await fs.chmod(dir, 0o755).catch(() => {});
  const dataDir = path.join(dir, 'server');
  let server: EmbeddedPostgres = await startEmbeddedPostgres({ dataDir, database: 'postgres', log: silent });
  const port = server.port;
  return {
    url: server.url,
    restartable: true,
    async restart(downMs: number) {
      await server.stop();
      await new Promise((resolve) => setTimeout(resolve, downMs));
      server = await startEmbeddedPostgres({ dataDir, port, database: 'postgres', log: silent });
    },
    stop: () => server.stop(),
  };
}

/** A server given by URL (CHAOS_DATABASE_URL): used as is, never restarted or stopped. */
export function externalServer(url: string): ChaosServer {
  return {
    url,
    restartable: false,
    restart: () => Promise.reject(new Error('the harness cannot restart a PostgreSQL it did not start')),
    stop: async () => {},
  };
}

export function withDatabase(url: string, name: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(name)}`;
  return parsed.toString();
}

const admin = (url: string) =>
  postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10, connection: { application_name: 'chaos-harness' } });

/** Creates an empty database on the server (the instances migrate it at start); resolves with its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  const sql = admin(serverUrl);
  try {
    await sql`drop database if exists ${sql(name)} with (force)`;
    await sql`create database ${sql(name)}`;
  } catch (error) {
    throw new Error(`could not create the database ${name} on ${redact(serverUrl)} (the harness needs CREATEDB): ${String(error)}`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return withDatabase(serverUrl, name);
}

export async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const sql = admin(serverUrl);
  try {
    await sql`drop database if exists ${sql(name)} with (force)`;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparsable URL)';
  }
}

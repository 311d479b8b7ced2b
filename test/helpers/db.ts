import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after } from 'node:test';
import postgres from 'postgres';
import { connect, type Database, type Sql } from '../../src/db/client.ts';
import { MIGRATIONS_DIR, runMigrations } from '../../src/db/migrate.ts';

/** The server the tests use: `npm test` starts a throwaway one and sets this. */
export function serverUrl(): string {
  const url = process.env['TEST_DATABASE_URL'];
  if (!url) throw new Error('TEST_DATABASE_URL is not set: run the tests with `npm test`, which starts a throwaway PostgreSQL.');
  return url;
}

const withDatabase = (url: string, name: string): string => {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
};

const closeFirst: (() => Promise<void>)[] = [];

/** A template migrated once per migration set; each test database is a cheap clone of it. */
function templateName(): string {
  const hash = createHash('sha256');
  for (const file of fs.readdirSync(MIGRATIONS_DIR, { recursive: true }).map(String).sort()) {
    const full = `${MIGRATIONS_DIR}/${file}`;
    if (fs.statSync(full).isFile()) hash.update(file).update(fs.readFileSync(full));
  }
  return `server_jobs_tmpl_${hash.digest('hex').slice(0, 12)}`;
}

/**
 * Creates a fresh, migrated database for the calling test file and drops it when the file's
 * tests end. Returns its URL.
 */
export async function createTestDatabase(): Promise<string> {
  const admin = postgres(serverUrl(), { max: 1, onnotice: () => {} });
  const template = templateName();
  const name = `server_jobs_test_${randomBytes(5).toString('hex')}`;
  try {
    // Test files run in parallel: one creates the template, the others wait for it.
    await admin`select pg_advisory_lock(727001)`;
    const [exists] = await admin`select 1 from pg_database where datname = ${template}`;
    if (!exists) {
      const building = `${template}_build`;
      await admin`drop database if exists ${admin(building)}`;
      await admin`create database ${admin(building)}`;
      await runMigrations(withDatabase(serverUrl(), building));
      await admin`alter database ${admin(building)} rename to ${admin(template)}`;
    }
    await admin`create database ${admin(name)} template ${admin(template)}`;
  } finally {
    await admin`select pg_advisory_unlock(727001)`.catch(() => {});
    await admin.end();
  }
  after(async () => {
    // Clients of this database close first, so dropping it terminates nobody.
    await Promise.allSettled(closeFirst.splice(0).map((close) => close()));
    const cleanup = postgres(serverUrl(), { max: 1, onnotice: () => {} });
    await cleanup`drop database if exists ${cleanup(name)} with (force)`.catch(() => {});
    await cleanup.end();
  });
  return withDatabase(serverUrl(), name);
}

/** A connected client on a fresh test database, closed when the file's tests end. */
export async function testDatabase(): Promise<Database & { url: string }> {
  const url = await createTestDatabase();
  const db = connect(url, { max: 5 });
  closeFirst.push(() => db.close());
  return { ...db, url };
}

/** Everything a refused or rejected operation must leave as it was: every row of the service's tables, as text. */
export async function snapshot(sql: Sql): Promise<string> {
  const jobs = await sql`select * from jobs order by id`;
  const runs = await sql`select * from job_runs order by id`;
  const log = await sql`select * from log_entries order by id`;
  const connectors = await sql`select * from connectors order by id`;
  return JSON.stringify({ jobs, runs, log, connectors });
}

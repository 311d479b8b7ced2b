import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { MIGRATIONS_DIR, runMigrations } from '../src/db/migrate.ts';
import { serverUrl } from './helpers/db.ts';

const withDatabase = (url: string, name: string): string => {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  return parsed.toString();
};

/** An empty database (no migrations applied), dropped when the file's tests end. */
async function emptyDatabase(): Promise<string> {
  const name = `server_jobs_migrations_${randomBytes(5).toString('hex')}`;
  const admin = postgres(serverUrl(), { max: 1, onnotice: () => {} });
  await admin`create database ${admin(name)}`;
  await admin.end();
  after(async () => {
    const cleanup = postgres(serverUrl(), { max: 1, onnotice: () => {} });
    await cleanup`drop database if exists ${cleanup(name)} with (force)`.catch(() => {});
    await cleanup.end();
  });
  return withDatabase(serverUrl(), name);
}

/** Applies the landed migrations up to and including `tag`, as a database of an older release has them. */
async function migrateUpTo(url: string, tag: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'server-jobs-old-migrations-'));
  try {
    fs.cpSync(MIGRATIONS_DIR, dir, { recursive: true });
    const journalFile = path.join(dir, 'meta', '_journal.json');
    const journal = JSON.parse(fs.readFileSync(journalFile, 'utf8')) as { entries: { idx: number; tag: string }[] };
    const last = journal.entries.findIndex((e) => e.tag === tag);
    assert.ok(last >= 0, `no migration ${tag}`);
    journal.entries = journal.entries.slice(0, last + 1);
    fs.writeFileSync(journalFile, JSON.stringify(journal));
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await migrate(drizzle(sql), { migrationsFolder: dir });
    } finally {
      await sql.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('migrations', () => {
  it('should clear startedAt of SKIPPED runs stored before SKIPPED runs stopped having one, and leave other runs alone', async () => {
    const url = await emptyDatabase();
    await migrateUpTo(url, '0001_connectors');
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    after(() => sql.end());
    const due = new Date('2026-01-01T00:00:01.000Z');
    const recorded = new Date('2026-01-01T00:00:01.040Z');
    await sql`
      insert into job_runs (job_id, trigger, scheduled_at, started_at, finished_at, status, missed) values
        ('old', 'SCHEDULE', ${due}, ${recorded}, ${recorded}, 'SKIPPED', 0),
        ('old', 'MANUAL', ${due}, ${due}, ${recorded}, 'SUCCEEDED', 0)`;

    await runMigrations(url);

    const rows = await sql<{ status: string; started_at: Date | null; finished_at: Date | null }[]>`
      select status, started_at, finished_at from job_runs order by id`;
    assert.deepEqual(
      rows.map((r) => [r.status, r.started_at?.toISOString() ?? null, r.finished_at?.toISOString() ?? null]),
      [
        ['SKIPPED', null, recorded.toISOString()],
        ['SUCCEEDED', due.toISOString(), recorded.toISOString()],
      ],
    );
  });
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { DataDirInUseError, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';

const embeddedModule = fileURLToPath(new URL('../src/db/embedded.ts', import.meta.url));
let root: string;

before(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-embedded-'));
  await fs.chmod(root, 0o755); // as root, the server runs as user postgres and must reach the cluster
});
after(() => fs.rm(root, { recursive: true, force: true }));

async function query<T extends object>(pg: EmbeddedPostgres, run: (sql: postgres.Sql) => Promise<T[]>): Promise<T[]> {
  const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    return [...(await run(sql))]; // a plain array, for deepEqual
  } finally {
    await sql.end();
  }
}

/** Alive and not a zombie: the orphan's new parent (init) may take a while to reap it. */
async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/\) Z /.test(stat);
}

test('serves on 127.0.0.1, owns its directory, keeps data across restarts, recovers a stale lock', async () => {
  const dataDir = path.join(root, 'main');
  const pg = await startEmbeddedPostgres({ dataDir });
  try {
    assert.notEqual(pg.port, 5432);
    assert.equal(pg.url, `postgres://postgres@127.0.0.1:${pg.port}/server_jobs`);
    const [row] = await query(
      pg,
      (sql) => sql<{ db: string; addr: string; listen: string }[]>`
      select current_database() as db, host(inet_server_addr()) as addr, current_setting('listen_addresses') as listen`,
    );
    assert.deepEqual(row, { db: 'server_jobs', addr: '127.0.0.1', listen: '127.0.0.1' });

    await assert.rejects(startEmbeddedPostgres({ dataDir }), DataDirInUseError);
    await query(pg, (sql) => sql`create table kept (note text); insert into kept values ('still here')`.simple());
  } finally {
    await pg.stop();
  }
  await pg.stop(); // idempotent
  await assert.rejects(fs.access(path.join(dataDir, 'service.pid')), 'stop releases the lock');

  // A service that crashed leaves its lock behind; its pid is long gone.
  await fs.writeFile(path.join(dataDir, 'service.pid'), '999999\n');
  const again = await startEmbeddedPostgres({ dataDir });
  try {
    assert.equal(await fs.readFile(path.join(dataDir, 'service.pid'), 'utf8'), `${process.pid}\n`);
    assert.deepEqual(await query(again, (sql) => sql`select note from kept`), [{ note: 'still here' }]);
  } finally {
    await again.stop();
  }
});

test('another live process owns the directory; after it crashes its orphaned server is stopped', async () => {
  const dataDir = path.join(root, 'crash');
  // A separate service process that starts the server and then dies without stopping it.
  const code = `const m = await import(${JSON.stringify(embeddedModule)});
    const pg = await m.startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} });
    console.log(pg.port); setInterval(() => {}, 1000);`;
  const owner = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    const lines = createInterface({ input: owner.stdout })[Symbol.asyncIterator]();
    const [line] = await Promise.race([
      lines.next().then((r) => [r.value as string]),
      new Promise<never>((_, reject) => owner.once('exit', (c) => reject(new Error(`owner exited with ${c}`)))),
    ]);
    assert.match(line ?? '', /^\d+$/);

    await assert.rejects(startEmbeddedPostgres({ dataDir }), (e: Error) => {
      assert.ok(e instanceof DataDirInUseError);
      assert.match(e.message, new RegExp(`in use by process ${owner.pid}`));
      return true;
    });
  } finally {
    owner.kill('SIGKILL');
  }
  await new Promise((resolve) => (owner.exitCode === null && owner.signalCode === null ? owner.once('exit', resolve) : resolve(null)));

  const orphan = Number.parseInt(await fs.readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8'), 10);
  assert.ok(await isAlive(orphan), 'the crashed service left its postgres running');
  const pg = await startEmbeddedPostgres({ dataDir });
  try {
    assert.ok(!(await isAlive(orphan)), 'the orphan was stopped');
    assert.deepEqual(await query(pg, (sql) => sql`select 1 as one`), [{ one: 1 }]);
  } finally {
    await pg.stop();
  }
});

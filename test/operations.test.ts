import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ServerOperationsConnector } from '../src/connectors/server-operations.ts';
import type { CallContext } from '../src/connectors/types.ts';
import type { LogLevel } from '../src/db/rows.ts';
import { builtinOperations } from '../src/connectors/builtin-operations.ts';
import { testDatabase } from './helpers/db.ts';
import { silentLog, T0 } from './helpers/harness.ts';

const { sql, url: databaseUrl } = await testDatabase();

const OPERATIONS_DIR = fileURLToPath(new URL('../operations/', import.meta.url));
const DAY = 86_400_000;
const GS = '\u001d';
const builtins = () => builtinOperations({ logRetentionDays: 30, runRetentionDays: 30, now: () => T0 });

// The shipped configuration, loaded the way the service loads it.
/** A connector on `dir` as the service builds it: two worker threads on the test database. */
const connectorOn = (dir: string) =>
  new ServerOperationsConnector({ dir, builtins: builtins(), databaseUrl, instance: 'operations-test', workers: 2, log: silentLog });

const shipped = connectorOn(OPERATIONS_DIR);
await shipped.start();
after(() => shipped.stop());

interface LoggedEntry {
  level: LogLevel;
  message: string;
  details?: unknown;
}

/** A real call context on the test database; log entries are collected instead of written. */
function callContext(options: { scheduledAt?: Date; signal?: AbortSignal } = {}): CallContext & { logged: LoggedEntry[] } {
  const logged: LoggedEntry[] = [];
  return {
    signal: options.signal ?? new AbortController().signal,
    log: async (level, message, details) => void logged.push({ level, message, details }),
    jobId: 'operations-test',
    runId: '1',
    scheduledAt: options.scheduledAt ?? new Date(T0),
    sql,
    logged,
  };
}

/** Calls an operation and answers its log messages. */
async function call(connector: ServerOperationsConnector, name: string, options: Parameters<typeof callContext>[0] = {}) {
  const ctx = callContext(options);
  await connector.call(name, ctx);
  return ctx.logged.map((e) => e.message);
}

/** Sets environment variables (undefined unsets) for the length of `fn`. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** A local HTTP server for the length of `fn`; it is closed, connections included, afterwards. */
async function withServer<T>(handler: (req: IncomingMessage, res: ServerResponse) => void, fn: (url: string) => Promise<T>): Promise<T> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    return await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

const json =
  (body: unknown, status = 200) =>
  (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };

const codes = async () => (await sql<{ code: string }[]>`select code from marking_codes order by code`).map((r) => r.code);

describe('loading marking codes', () => {
  const LOAD = 'Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру';
  // The operation creates its table when missing: each test starts without it.
  beforeEach(() => sql`drop table if exists marking_codes`);

  it('should load sample codes when no source is set, and none anew for the same due time', async () => {
    await withEnv({ MARKING_CODES_SOURCE_URL: undefined }, async () => {
      assert.deepEqual(await call(shipped, LOAD), ['Loaded 3 new marking codes (3 received)']);
      const first = await codes();
      assert.equal(first.length, 3);
      assert.ok(
        first.every((code) => /^01\d{14}21/.test(code) && code.includes(`${GS}91`)),
        'sample codes look like DataMatrix codes',
      );

      assert.deepEqual(await call(shipped, LOAD), ['Loaded 0 new marking codes (3 received)']);
      assert.deepEqual(await codes(), first);

      assert.deepEqual(await call(shipped, LOAD, { scheduledAt: new Date(T0 + 60_000) }), ['Loaded 3 new marking codes (3 received)']);
      assert.equal((await codes()).length, 6);
    });
  });

  it('should load the codes an HTTP source answers, as an array or as {codes}', async () => {
    const requests: string[] = [];
    const answers = [
      ['0104600000000015210000000000001', '0104600000000015210000000000002', ' '],
      { codes: ['0104600000000015210000000000002', '0104600000000022210000000000003'] },
    ];
    await withServer(
      (req, res) => {
        requests.push(`${req.method} ${req.url}`);
        json(answers[requests.length - 1])(req, res);
      },
      (url) =>
        withEnv({ MARKING_CODES_SOURCE_URL: `${url}/codes?token=secret` }, async () => {
          const ctx = callContext();
          await shipped.call(LOAD, ctx);
          assert.equal(ctx.logged[0]?.message, 'Loaded 2 new marking codes (2 received)');
          assert.doesNotMatch(JSON.stringify(ctx.logged), /secret/, 'the source URL is logged without its query string');
          assert.deepEqual(await call(shipped, LOAD), ['Loaded 1 new marking codes (2 received)']);
        }),
    );
    assert.deepEqual(requests, ['GET /codes?token=secret', 'GET /codes?token=secret']);
    assert.deepEqual(await codes(), [
      '0104600000000015210000000000001',
      '0104600000000015210000000000002',
      '0104600000000022210000000000003',
    ]);
  });

  it('should fail the run clearly when the source answers an error', async () => {
    await withServer(json({ error: 'down' }, 503), (url) =>
      withEnv({ MARKING_CODES_SOURCE_URL: url }, async () => {
        await assert.rejects(shipped.call(LOAD, callContext()), /answered 503/);
      }),
    );
  });
});

describe('cleaning crypto tails', () => {
  beforeEach(() => sql`drop table if exists marking_codes`);

  it('should keep the part before the first group separator, once per code', async () => {
    assert.deepEqual(await call(shipped, 'ОчисткаКриптохвостов'), ['Cleaned the crypto tails of 0 marking codes; 0 duplicates removed']);
    const a = '0104600000000015210000000000001';
    const b = '0104600000000015210000000000002';
    const c = '0104600000000022210000000000003';
    const d = '0104600000000039210000000000004';
    await sql`insert into marking_codes (code) select unnest(${sql.array([
      a,
      `${a}${GS}91EE07${GS}92tail-a`, // its clean form is stored already
      `${b}${GS}91EE07${GS}92tail-b1`,
      `${b}${GS}91EE07${GS}92tail-b2`, // two tails of one code
      `${c}${GS}92tail-c`,
      d, // no tail: untouched
    ])}::text[])`;
    assert.deepEqual(await call(shipped, 'ОчисткаКриптохвостов'), ['Cleaned the crypto tails of 4 marking codes; 2 duplicates removed']);
    assert.deepEqual(await codes(), [a, b, c, d]);
  });
});

describe('deleting documents', () => {
  beforeEach(() => sql`drop table if exists documents`);
  const now = T0;

  /** Creates the table through the operation itself, then inserts `count` documents. */
  async function insertDocuments(count: number, doc: { status: string; createdDaysAgo: number; completedDaysAgo?: number }) {
    await sql`insert into documents (number, status, created_at, completed_at)
      select 'doc-' || i, ${doc.status}::text, ${new Date(now - doc.createdDaysAgo * DAY)}::timestamptz,
        ${doc.completedDaysAgo === undefined ? null : new Date(now - doc.completedDaysAgo * DAY)}::timestamptz
      from generate_series(1, ${count}) i`;
  }
  const byStatus = async () => [
    ...(await sql<{ status: string; days: number; n: number }[]>`
      select status, extract(day from ${new Date(now)} - coalesce(completed_at, created_at))::int as days, count(*)::int as n
      from documents group by 1, 2 order by 1, 2`),
  ];

  it('should delete completed documents older than N days, in batches, and keep the rest', async () => {
    await call(shipped, 'УдалитьЗавершенныеДокументы'); // creates the table
    await insertDocuments(2500, { status: 'completed', createdDaysAgo: 50, completedDaysAgo: 31 });
    await insertDocuments(2, { status: 'completed', createdDaysAgo: 50, completedDaysAgo: 29 });
    await insertDocuments(1, { status: 'new', createdDaysAgo: 400 });
    await withEnv({ DOCUMENTS_KEEP_DAYS: undefined }, async () => {
      assert.deepEqual(await call(shipped, 'УдалитьЗавершенныеДокументы', { scheduledAt: new Date(now) }), [
        'Deleted 2500 documents completed more than 30 days ago',
      ]);
    });
    assert.deepEqual(await byStatus(), [
      { status: 'completed', days: 29, n: 2 },
      { status: 'new', days: 400, n: 1 },
    ]);
    await withEnv({ DOCUMENTS_KEEP_DAYS: '7' }, async () => {
      assert.deepEqual(await call(shipped, 'УдалитьЗавершенныеДокументы'), ['Deleted 2 documents completed more than 7 days ago']);
    });
    assert.deepEqual(await byStatus(), [{ status: 'new', days: 400, n: 1 }]);
  });

  it('should delete documents created more than N days ago, whatever their status', async () => {
    await call(shipped, 'УдалитьСтарыеДокументы');
    await insertDocuments(3, { status: 'new', createdDaysAgo: 366 });
    await insertDocuments(1, { status: 'completed', createdDaysAgo: 400, completedDaysAgo: 1 });
    await insertDocuments(2, { status: 'new', createdDaysAgo: 100 });
    await withEnv({ DOCUMENTS_MAX_AGE_DAYS: undefined }, async () => {
      assert.deepEqual(await call(shipped, 'УдалитьСтарыеДокументы'), ['Deleted 4 documents created more than 365 days ago']);
    });
    assert.deepEqual(await byStatus(), [{ status: 'new', days: 100, n: 2 }]);
  });

  it('should stop deleting when the run is aborted', async () => {
    await call(shipped, 'УдалитьСтарыеДокументы');
    await insertDocuments(3, { status: 'new', createdDaysAgo: 1000 });
    const abort = new AbortController();
    abort.abort();
    assert.deepEqual(await call(shipped, 'УдалитьСтарыеДокументы', { signal: abort.signal }), [
      'Deleted 0 documents created more than 365 days ago (stopped early: the run was aborted)',
    ]);
    assert.equal((await byStatus())[0]?.n, 3);
  });

  it('should refuse a malformed number of days, naming the variable', async () => {
    await withEnv({ DOCUMENTS_KEEP_DAYS: 'thirty' }, async () => {
      await assert.rejects(
        shipped.call('УдалитьЗавершенныеДокументы', callContext()),
        /DOCUMENTS_KEEP_DAYS must be a whole number of days, got "thirty"/,
      );
    });
  });
});

describe('the example operations', () => {
  it('should do nothing in Noop and fail clearly in Fail', async () => {
    assert.deepEqual(await call(shipped, 'Noop'), []);
    await assert.rejects(shipped.call('Fail', callContext()), { message: /Fail always fails/ });
  });

  it('should stop Sleep as soon as the run is aborted', async () => {
    const abort = new AbortController();
    const started = Date.now();
    const sleeping = shipped.call('Sleep', callContext({ signal: abort.signal }));
    setTimeout(() => abort.abort(), 20);
    await assert.rejects(sleeping, { name: 'AbortError' });
    assert.ok(Date.now() - started < 5000, 'Sleep did not wait its 10 s out');
  });
});

describe('the shipped configuration', () => {
  it('should list the shipped operations and the built-in ones', () => {
    const expected = [
      'Кировка АвтоматическоеПолучениеТаблицыМарокПоТаймеру',
      'ОчисткаКриптохвостов',
      'УдалитьЗавершенныеДокументы',
      'УдалитьСтарыеДокументы',
      'Noop',
      'Fail',
      'Sleep',
      'PurgeLogEntries',
      'PurgeRuns',
    ];
    assert.deepEqual(shipped.methods(), [...expected].sort());
    assert.ok(expected.every((name) => shipped.hasMethod(name)));
  });

  it('should reject a call to an unknown operation, naming it', async () => {
    await assert.rejects(shipped.call('Нет Такой Операции', callContext()), /Server operation "Нет Такой Операции" does not exist/);
  });
});

describe('the built-in purge operations', () => {
  beforeEach(() => sql`truncate log_entries, job_runs`);

  it('should delete log entries older than the retention and keep recent ones', async () => {
    await sql`insert into log_entries (at, level, message) values
      (${new Date(T0 - 31 * DAY)}, 'INFO', 'old'), (${new Date(T0 - 40 * DAY)}, 'ERROR', 'older'),
      (${new Date(T0 - 29 * DAY)}, 'INFO', 'recent')`;
    assert.deepEqual(await call(shipped, 'PurgeLogEntries'), ['Deleted 2 rows of log_entries older than 30 days']);
    assert.deepEqual(
      (await sql`select message from log_entries`).map((r) => r['message']),
      ['recent'],
    );
  });

  it('should delete old runs and keep recent ones and runs still RUNNING', async () => {
    const old = new Date(T0 - 40 * DAY);
    await sql`insert into job_runs (job_id, trigger, scheduled_at, status) values
      ('a', 'SCHEDULE', ${old}, 'SUCCEEDED'), ('a', 'MANUAL', ${old}, 'FAILED'),
      ('b', 'SCHEDULE', ${old}, 'RUNNING'), ('a', 'SCHEDULE', ${new Date(T0 - DAY)}, 'FAILED')`;
    assert.deepEqual(await call(shipped, 'PurgeRuns'), ['Deleted 2 rows of job_runs older than 30 days']);
    assert.deepEqual(
      (await sql`select job_id, status from job_runs order by job_id`).map((r) => `${r['jobId']} ${r['status']}`),
      ['a FAILED', 'b RUNNING'],
    );
  });
});

describe('reloading server operations', () => {
  /** A connector on a fresh directory holding `files`; stopped after the test. */
  async function connectorOnFiles(files: Record<string, string>) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'server-operations-'));
    for (const [name, text] of Object.entries(files)) await fs.writeFile(path.join(dir, name), text);
    const connector = connectorOn(dir);
    await connector.start();
    after(async () => {
      await connector.stop();
      await fs.rm(dir, { recursive: true, force: true });
    });
    return { dir, connector };
  }

  it('should skip a module that fails to load and keep the other files available', async () => {
    const { connector } = await connectorOnFiles({
      'good.mjs': `export default { async Good() { return 'good'; } };`,
      'broken.mjs': `export default { async Broken( { };`,
      'no-default.js': `export const Missing = async () => {};`,
      'notes.txt': 'not a module',
    });
    assert.deepEqual(connector.methods(), ['Good', 'PurgeLogEntries', 'PurgeRuns']);
    assert.equal(await connector.call('Good', callContext()), 'good');
    await assert.rejects(connector.call('Broken', callContext()), /Server operation "Broken" does not exist/);
  });

  it('should make a new, changed or removed operation take effect after reload()', async () => {
    const { dir, connector } = await connectorOnFiles({ 'a.mjs': `export default { async A() { return 1; } };` });
    await fs.writeFile(path.join(dir, 'a.mjs'), `export default { async A() { return 2; }, async 'A два'() { return 3; } };`);
    await fs.writeFile(path.join(dir, 'b.mjs'), `export default { async B() { return 4; } };`);
    await connector.reload();
    assert.equal(await connector.call('A', callContext()), 2);
    assert.equal(await connector.call('A два', callContext()), 3);
    assert.equal(await connector.call('B', callContext()), 4);

    await fs.rm(path.join(dir, 'b.mjs'));
    await connector.reload();
    assert.equal(connector.hasMethod('B'), false);
    await assert.rejects(connector.call('B', callContext()), /Server operation "B" does not exist/);
  });

  it('should pick up a new file by itself, without reload()', async () => {
    const { dir, connector } = await connectorOnFiles({});
    assert.equal(connector.hasMethod('Watched'), false);
    await fs.writeFile(path.join(dir, 'watched.mjs'), `export default { async Watched() { return 'seen'; } };`);
    // fs.watch and a short debounce: wait for the event, bounded, rather than for a fixed time.
    const until = Date.now() + 5000;
    while (!connector.hasMethod('Watched')) {
      if (Date.now() > until) assert.fail('the new operation did not become available within 5 s');
      await sleep(20);
    }
    assert.equal(await connector.call('Watched', callContext()), 'seen');
  });
});

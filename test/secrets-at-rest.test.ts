import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import postgres from 'postgres';
import { ConfigError, loadConfig } from '../src/config.ts';
import { type Instance, startInstance } from '../src/instance.ts';
import type { Json } from './helpers/api.ts';
import { createTestDatabase } from './helpers/db.ts';
import { operationsDir } from './helpers/instance.ts';

// Connector secrets at rest (SPEC §8), through whole instances started one after another on one
// database, as an operator would: without a key, with one, rotated, with a wrong one, with none.

const KEY_1 = Buffer.alloc(32, 0x11).toString('base64');
const KEY_2 = Buffer.alloc(32, 0x22).toString('base64url');
const BEARER = 'bearer-canary-7f3a9c';
const BASIC = 'robot:basic-canary-пароль-42';
/** Every form of every secret that must never come back: the secrets, their base64, the keys. */
const CANARIES = [
  BEARER,
  BASIC,
  'basic-canary',
  Buffer.from(BASIC, 'utf8').toString('base64'),
  Buffer.from(BEARER).toString('base64'),
  KEY_1,
  KEY_2,
  Buffer.alloc(32, 0x22).toString('base64'),
];

const url = await createTestDatabase();
let db: postgres.Sql;
const ops = operationsDir();
let target: Server;
let targetUrl: string;
const authorizations: (string | undefined)[] = [];
/** Every answer of the API and every line the instances logged, checked for leaks at the end. */
const seen: string[] = [];

before(async () => {
  db = postgres(url, { max: 2, onnotice: () => {} });
  target = createServer((req: IncomingMessage, res) => {
    authorizations.push(req.headers.authorization);
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  targetUrl = `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
});
after(async () => {
  await db.end();
  target.closeAllConnections();
  await new Promise((resolve) => target.close(resolve));
});

interface Started {
  instance: Instance;
  lines: string[];
  api(
    query: string,
    variables?: Record<string, unknown>,
  ): Promise<{ data?: Json | null; errors?: { message: string; extensions?: Record<string, unknown> }[] }>;
}

/** An instance on the test database with these secrets settings, its log lines kept. */
async function start(settings: Record<string, string>): Promise<Started> {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const config = loadConfig({
    PORT: '0',
    DATABASE_URL: url,
    SERVER_OPERATIONS_DIR: ops,
    SERVER_OPERATIONS_WORKERS: '1',
    HTTP_CONNECTOR_ALLOW_HOSTS: '127.0.0.1',
    SHUTDOWN_GRACE_SECONDS: '1',
    ...settings,
  });
  const instance = await startInstance({ config, log: pino({ level: 'debug' }, stream) });
  seen.push(...lines);
  const api: Started['api'] = async (query, variables) => {
    const response = await fetch(`http://127.0.0.1:${instance.port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query, variables }),
    });
    const text = await response.text();
    seen.push(text);
    return JSON.parse(text) as Awaited<ReturnType<Started['api']>>;
  };
  return { instance, lines, api };
}

async function stop(s: Started): Promise<void> {
  await s.instance.stop();
  seen.push(...s.lines);
}

const stored = async () =>
  Object.fromEntries(
    (await db<{ id: string; secret: string }[]>`select id, secret from connectors order by id`).map((r) => [r.id, r.secret]),
  );

/** Runs job `id` now and waits for the run to end; answers the run. */
async function runNow(s: Started, id: string): Promise<{ status: string; error: string | null }> {
  const started = await s.api(`mutation($id: ID!) { runJobNow(id: $id) { id } }`, { id });
  assert.ok(started.data?.['runJobNow'], JSON.stringify(started));
  const runId = String(started.data['runJobNow'].id);
  for (let i = 0; i < 200; i++) {
    const [run] = await db<{ status: string; error: string | null }[]>`select status, error from job_runs where id = ${runId}`;
    if (run && run.status !== 'RUNNING') return run;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${runId} did not end`);
}

describe('connector secrets at rest', () => {
  it('should warn in plain text without a key, encrypt at the first start with one, rotate, and fail runs clearly with a wrong key', async () => {
    // 1. No key: stored as given, and the start says so.
    const plain = await start({});
    assert.ok(
      plain.lines.some((l) => /"level":40/.test(l) && /secrets are stored in plain text/.test(l)),
      plain.lines.join('\n'),
    );
    const created = await plain.api(
      `mutation($b: String!, $u: String!) {
        a: createConnector(input: { id: "Bearer", baseUrl: $u, authScheme: BEARER, secret: $b }) { id hasSecret }
      }`,
      { b: BEARER, u: targetUrl },
    );
    assert.equal(created.data?.['a'].hasSecret, true, JSON.stringify(created));
    await plain.api(`mutation { createJob(input: { id: "bearer-job", name: "b", externalCall: "Bearer:ping", period: "1:0:0" }) { id } }`);
    assert.equal((await stored())['Bearer'], BEARER);
    await stop(plain);

    // 2. With a key: the plain secret is encrypted at start; new secrets are written encrypted.
    const first = await start({ SECRETS_KEY: KEY_1 });
    const afterFirst = await stored();
    assert.match(afterFirst['Bearer']!, /^enc:v1:[0-9a-f]{8}:/);
    assert.ok(
      first.lines.some((l) => /1 encrypted, 0 re-encrypted/.test(l)),
      first.lines.join('\n'),
    );
    assert.ok(!first.lines.some((l) => /plain text/.test(l)));
    const basic = await first.api(
      `mutation($s: String!, $u: String!) { createConnector(input: { id: "Basic", baseUrl: $u, authScheme: BASIC, secret: $s }) { id hasSecret } }`,
      { s: BASIC, u: targetUrl },
    );
    assert.equal(basic.data?.['createConnector'].hasSecret, true, JSON.stringify(basic));
    await first.api(`mutation { createJob(input: { id: "basic-job", name: "b", externalCall: "Basic:ping", period: "1:0:0" }) { id } }`);
    const keyOne = afterFirst['Bearer']!.split(':')[2];
    assert.equal((await stored())['Basic']!.split(':')[2], keyOne);
    // Calls still authenticate.
    authorizations.length = 0;
    assert.equal((await runNow(first, 'bearer-job')).status, 'SUCCEEDED');
    assert.equal((await runNow(first, 'basic-job')).status, 'SUCCEEDED');
    assert.deepEqual(authorizations, [`Bearer ${BEARER}`, `Basic ${Buffer.from(BASIC, 'utf8').toString('base64')}`]);
    // An update that keeps the secret keeps it readable; one that gives it seals it again.
    const kept = await first.api(`mutation { updateConnector(id: "Basic", input: { timeoutSeconds: 30 }) { hasSecret } }`);
    assert.equal(kept.data?.['updateConnector'].hasSecret, true, JSON.stringify(kept));
    const toBearer = await first.api(`mutation { updateConnector(id: "Basic", input: { authScheme: BEARER }) { authScheme } }`);
    assert.equal(toBearer.data?.['updateConnector'].authScheme, 'BEARER', JSON.stringify(toBearer));
    const backToBasic = await first.api(`mutation { updateConnector(id: "Basic", input: { authScheme: BASIC }) { authScheme } }`);
    assert.equal(backToBasic.data?.['updateConnector'].authScheme, 'BASIC', JSON.stringify(backToBasic));
    const looksSealed = await first.api(`mutation { updateConnector(id: "Basic", input: { secret: "enc:v1:x:y" }) { id } }`);
    assert.equal(looksSealed.errors?.[0]?.extensions?.['field'], 'secret', JSON.stringify(looksSealed));
    authorizations.length = 0;
    assert.equal((await runNow(first, 'basic-job')).status, 'SUCCEEDED');
    assert.deepEqual(authorizations, [`Basic ${Buffer.from(BASIC, 'utf8').toString('base64')}`]);
    await stop(first);

    // 3. Rotation: both re-encrypted under the new key at start; calls still authenticate.
    const rotated = await start({ SECRETS_KEY: KEY_2, SECRETS_KEY_PREVIOUS: KEY_1 });
    const afterRotation = await stored();
    for (const id of ['Basic', 'Bearer']) {
      assert.match(afterRotation[id]!, /^enc:v1:/);
      assert.notEqual(afterRotation[id]!.split(':')[2], keyOne, `${id} is still under the old key`);
    }
    assert.ok(
      rotated.lines.some((l) => /0 encrypted, 2 re-encrypted/.test(l)),
      rotated.lines.join('\n'),
    );
    authorizations.length = 0;
    assert.equal((await runNow(rotated, 'bearer-job')).status, 'SUCCEEDED');
    assert.deepEqual(authorizations, [`Bearer ${BEARER}`]);
    await stop(rotated);

    // 4. The old key alone: nothing is re-encrypted, the start warns, and runs fail clearly.
    const wrong = await start({ SECRETS_KEY: KEY_1 });
    assert.deepEqual(await stored(), afterRotation);
    assert.ok(
      wrong.lines.some((l) => /"level":40/.test(l) && /connectors Basic, Bearer cannot be decrypted/.test(l)),
      wrong.lines.join('\n'),
    );
    authorizations.length = 0;
    const failed = await runNow(wrong, 'bearer-job');
    assert.equal(failed.status, 'FAILED');
    assert.match(failed.error ?? '', /^Connector Bearer: its secret cannot be decrypted: .*check SECRETS_KEY/);
    assert.deepEqual(authorizations, [], 'nothing was sent without its credentials');
    const [entry] = await db<
      { message: string }[]
    >`select message from log_entries where level = 'ERROR' and job_id = 'bearer-job' order by id desc limit 1`;
    assert.match(entry?.message ?? '', /secret cannot be decrypted/);
    // The service goes on: the API answers, and the connector can be given its secret again.
    const listed = await wrong.api(`{ connectors { id hasSecret } }`);
    assert.equal(listed.data?.['connectors'].length, 3, JSON.stringify(listed));
    await stop(wrong);

    // 5. No key at all: the encrypted secrets are named, and their runs say SECRETS_KEY is not set.
    const keyless = await start({});
    const unset = await runNow(keyless, 'basic-job');
    assert.equal(unset.status, 'FAILED');
    assert.match(unset.error ?? '', /secret cannot be decrypted: it is stored encrypted \(key id [0-9a-f]{8}\) and SECRETS_KEY is not set/);
    await stop(keyless);

    // Nothing anywhere holds a secret, a key or a ciphertext.
    const ciphertexts = Object.values({ ...afterFirst, ...afterRotation }).flatMap((s) =>
      s
        .split(':')
        .slice(3)
        .filter((p) => p.length >= 8),
    );
    const everything = [
      ...seen,
      JSON.stringify(await db`select * from log_entries`),
      JSON.stringify(await db`select error from job_runs`),
    ].join('\n');
    for (const leak of [...CANARIES, ...ciphertexts])
      assert.ok(!everything.includes(leak), `${leak} appears in an answer, a log line or a log entry`);
  });

  it('should refuse a bad key, or a previous key alone, at start without echoing it', () => {
    const secret = 'not-a-key-but-a-secret-value';
    for (const env of [{ SECRETS_KEY: secret }, { SECRETS_KEY: KEY_1, SECRETS_KEY_PREVIOUS: secret }, { SECRETS_KEY_PREVIOUS: KEY_1 }]) {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, /SECRETS_KEY/);
          for (const leak of [secret, KEY_1]) assert.ok(!error.message.includes(leak), error.message);
          return true;
        },
      );
    }
    assert.throws(() => loadConfig({ SECRETS_KEY: 'short' }), /SECRETS_KEY: must be 32 random bytes in base64/);
  });
});

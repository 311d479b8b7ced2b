// The service as `npm start` runs it, with AUTH_TOKENS_FILE: the start says auth is on (names and
// roles, never a token), requests need a token, and the file is watched by the running process.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { testDatabase } from './helpers/db.ts';
import { operationsDir } from './helpers/instance.ts';
import { runService, stopAll, waitFor } from './helpers/process.ts';

const db = await testDatabase();
after(stopAll);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'auth-process-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const TOKEN = 'canary-process-token-0f1e2d3c4b5a';
const LATER = 'canary-process-later-9a8b7c6d5e4f';

describe('the service with AUTH_TOKENS_FILE', () => {
  test('says auth is on at start, refuses requests without a token, and follows the file', { timeout: 90_000 }, async (t) => {
    const file = path.join(tmp, 'tokens');
    fs.writeFileSync(file, `# the team\nops:operator:${TOKEN}\n`);
    const { service, port } = await runService(t, { DATABASE_URL: db.url, SERVER_OPERATIONS_DIR: operationsDir(), AUTH_TOKENS_FILE: file });
    // Logged right after the listening record.
    const auth = await waitFor(
      () => service.records.find((r) => r['auth'] === 'on'),
      () => `the auth record: ${service.output}`,
    );
    assert.match(String(auth.msg), /authentication is on: 1 token from AUTH_TOKENS_FILE/);
    assert.deepEqual(auth['tokens'], ['ops (operator)']);
    assert.ok(!service.records.some((r) => r['auth'] === 'off'));

    const me = async (token?: string) => {
      const response = await fetch(`http://127.0.0.1:${port}/graphql`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query: '{ me { name role } }' }),
      });
      return { status: response.status, text: await response.text() };
    };
    assert.equal((await me()).status, 401);
    assert.deepEqual(JSON.parse((await me(TOKEN)).text), { data: { me: { name: 'ops', role: 'OPERATOR' } } });
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 401);
    assert.equal((await fetch(`http://127.0.0.1:${port}/health/live`)).status, 200);

    fs.writeFileSync(file, `grafana:viewer:${LATER}\n`);
    for (let i = 0; i < 50 && (await me(LATER)).status !== 200; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(JSON.parse((await me(LATER)).text), { data: { me: { name: 'grafana', role: 'VIEWER' } } });
    assert.equal((await me(TOKEN)).status, 401, 'the removed token is refused');
    assert.ok(service.records.some((r) => r.msg === 'AUTH_TOKENS_FILE read again'));
    assert.ok(!service.output.includes(TOKEN) && !service.output.includes(LATER), 'no token in the service output');
  });
});

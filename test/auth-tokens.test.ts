// Configuring tokens (SPEC §8): AUTH_TOKENS and AUTH_TOKENS_FILE, hashed lines, clear errors that
// never quote a token, the start log, and a tokens file re-read while the service runs: a token
// removed from it ends its open subscriptions (graphql-ws closes 4401, SSE sends an error and
// completes) within 5 s, while the others go on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { logAuth } from '../src/auth/start.ts';
import { watchTokenFile } from '../src/auth/token-file.ts';
import { sha256, TokenStore } from '../src/auth/tokens.ts';
import { ConfigError, loadConfig } from '../src/config.ts';
import { authApp, capturedLog, overHttp } from './helpers/auth.ts';
import { testDatabase } from './helpers/db.ts';
import { harness } from './helpers/harness.ts';
import { subscribeWs } from './helpers/live.ts';
import { sseFrames } from './helpers/live.ts';
import { waitFor } from './helpers/process.ts';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { problemsOf } from './helpers/config.ts';

const CANARY = 'canary-token-of-the-config-tests-42';
const OTHER = 'canary-second-token-of-the-tests-77';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'auth-tokens-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let files = 0;
function tokenFile(text: string): string {
  const file = path.join(tmp, `tokens-${++files}`);
  fs.writeFileSync(file, text);
  return file;
}

describe('token settings', () => {
  it('should read AUTH_TOKENS_FILE with plain and sha256 lines, comments and blank lines, keeping only hashes', () => {
    const file = tokenFile(
      `# the team's tokens\n\nops:operator:${CANARY}\r\nci:viewer:sha256:${sha256(OTHER).toString('hex').toUpperCase()}\n  boss : ADMIN : ${CANARY}-admin  \n`,
    );
    const config = loadConfig({ AUTH_TOKENS_FILE: file });
    assert.equal(config.AUTH_TOKENS_FILE, file);
    assert.deepEqual(
      config.AUTH_TOKENS.entries.map((e) => e.principal),
      [
        { name: 'ops', role: 'operator' },
        { name: 'ci', role: 'viewer' },
        { name: 'boss', role: 'admin' },
      ],
    );
    // Only hashes are kept: no token text anywhere in the configuration.
    const shown = JSON.stringify(config, (_, value: unknown) =>
      value instanceof Buffer || (value as { type?: string })?.type === 'Buffer' ? '<hash>' : value,
    );
    assert.ok(!shown.includes(CANARY) && !shown.includes(OTHER));
    assert.deepEqual(config.AUTH_TOKENS.entries[0]!.hash, sha256(CANARY));

    const store = new TokenStore(true, config.AUTH_TOKENS.entries);
    assert.deepEqual(store.authenticate(`Bearer ${OTHER}`), { name: 'ci', role: 'viewer' }, 'a hashed line accepts its token');
    assert.deepEqual(store.authenticate(`bearer   ${CANARY}`), { name: 'ops', role: 'operator' }, 'the scheme in any case');
    assert.equal(store.authenticate(`Bearer sha256:${sha256(OTHER).toString('hex')}`), null, 'the hash is not a token');
    assert.equal(store.authenticate(`Basic ${CANARY}`), null);
    assert.equal(store.authenticate(CANARY), null);
    assert.equal(store.authenticate(`Bearer ${CANARY}x`), null);
    assert.equal(store.authenticate(undefined), null);
    assert.deepEqual(TokenStore.off().authenticate(undefined), { name: 'local', role: 'admin' });
  });

  it('should name each bad entry and line clearly, and never quote a token', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ AUTH_TOKENS: CANARY }, /^AUTH_TOKENS: entry 1: expected name:role:token/],
      [{ AUTH_TOKENS: `ops:${CANARY}` }, /^AUTH_TOKENS: entry 1: expected name:role:token/],
      [{ AUTH_TOKENS: `ops:root:${CANARY}` }, /^AUTH_TOKENS: entry 1: the role must be viewer, operator or admin$/],
      [{ AUTH_TOKENS: `o ps:viewer:${CANARY}` }, /^AUTH_TOKENS: entry 1: the name must be/],
      [{ AUTH_TOKENS: `ok:viewer:${CANARY},ops:viewer:short` }, /^AUTH_TOKENS: entry 2: the token must be at least 16 printable ASCII/],
      [{ AUTH_TOKENS: `ops:viewer:${CANARY} and more` }, /^AUTH_TOKENS: entry 1: the token must be at least 16 printable ASCII/],
      [{ AUTH_TOKENS: `ops:viewer:sha256:${CANARY}` }, /^AUTH_TOKENS: entry 1: a hashed token is sha256: followed by the 64 hex digits/],
      [{ AUTH_TOKENS: `a:viewer:${CANARY},a:admin:${OTHER}` }, /^AUTH_TOKENS: entry 2: the name "a" is given twice \(also entry 1\)/],
      [{ AUTH_TOKENS: `a:viewer:${CANARY},b:admin:${CANARY}` }, /^AUTH_TOKENS: entry 2: the same token as entry 1/],
      [{ AUTH_TOKENS: ' , ' }, /^AUTH_TOKENS: lists no token/],
      [{ AUTH_TOKENS_FILE: tokenFile(`# ok\nops:viewer:${OTHER}\n${CANARY}\n`) }, /^AUTH_TOKENS_FILE: line 3: expected name:role:token/],
      [{ AUTH_TOKENS_FILE: tokenFile(`ops:superuser:${CANARY}\n`) }, /^AUTH_TOKENS_FILE: line 1: the role must be/],
      [{ AUTH_TOKENS_FILE: tokenFile('# nothing yet\n') }, /^AUTH_TOKENS_FILE: .* lists no token/],
      [{ AUTH_TOKENS_FILE: path.join(tmp, 'missing') }, /^AUTH_TOKENS_FILE: no such file: /],
      [
        { AUTH_TOKENS: `a:viewer:${CANARY}`, AUTH_TOKENS_FILE: tokenFile(`b:viewer:${OTHER}\n`) },
        /^AUTH_TOKENS and AUTH_TOKENS_FILE: both are set/,
      ],
    ];
    for (const [env, expected] of cases) {
      const problems = problemsOf(env);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `${expected}: got ${problems.join('; ')}`,
      );
      for (const p of problems) assert.ok(!p.includes(CANARY) && !p.includes(OTHER) && !p.includes('short'), `a token quoted: ${p}`);
      // The message main prints (ConfigError's) is built from the same problems.
      assert.throws(
        () => loadConfig(env),
        (e: unknown) => e instanceof ConfigError && !e.message.includes(CANARY),
      );
    }
  });

  it('should say at start whether auth is on, with names and roles, never a token', () => {
    const on = capturedLog();
    logAuth(loadConfig({ AUTH_TOKENS: `ops:operator:${CANARY}` }), on.log);
    assert.match(on.lines.join(''), /authentication is on: 1 token from AUTH_TOKENS/);
    assert.match(on.lines.join(''), /ops \(operator\)/);
    assert.ok(!on.lines.join('').includes(CANARY));
    // A file others may read, with plain tokens: a warning; with hashes only, none.
    const plain = tokenFile(`ops:operator:${CANARY}\n`);
    fs.chmodSync(plain, 0o644);
    const loose = capturedLog();
    logAuth(loadConfig({ AUTH_TOKENS_FILE: plain }), loose.log);
    assert.match(loose.lines.join(''), /"level":40.*"mode":"0644".*chmod 600/);
    fs.chmodSync(plain, 0o600);
    const tight = capturedLog();
    logAuth(loadConfig({ AUTH_TOKENS_FILE: plain }), tight.log);
    assert.ok(!tight.lines.join('').includes('chmod'));
    const hashedOnly = tokenFile(`ops:operator:sha256:${sha256(CANARY).toString('hex')}\n`);
    fs.chmodSync(hashedOnly, 0o644);
    const hashed = capturedLog();
    logAuth(loadConfig({ AUTH_TOKENS_FILE: hashedOnly }), hashed.log);
    assert.ok(!hashed.lines.join('').includes('chmod'));

    const off = capturedLog();
    logAuth(loadConfig({}), off.log);
    assert.match(off.lines.join(''), /"level":40.*authentication is off/);
  });
});

describe('AUTH_TOKENS_FILE re-read while running', () => {
  it(
    'should end the subscriptions of a removed token within 5 s (graphql-ws 4401, SSE error then complete), keep the others, and follow later changes',
    { timeout: 30_000 },
    async () => {
      const { sql } = await testDatabase();
      const h = harness(sql);
      h.connector.define('ok', async () => {});
      const file = tokenFile(`gone:viewer:${CANARY}\nstays:viewer:${OTHER}\n`);
      const config = loadConfig({ AUTH_TOKENS_FILE: file });
      const store = new TokenStore(true, config.AUTH_TOKENS.entries);
      const { log, lines } = capturedLog();
      const stop = watchTokenFile(file, store, log, config.AUTH_TOKENS.fileDigest);
      after(stop);
      const { port, url } = await authApp(h, store, log);

      const ws = (token: string, onClosed: (code: number) => void) => {
        const client = createClient({
          url: `ws://127.0.0.1:${port}/graphql`,
          webSocketImpl: WebSocket,
          retryAttempts: 0,
          lazy: false,
          connectionParams: { authorization: `Bearer ${token}` },
          on: { closed: (event) => onClosed((event as { code: number }).code) },
          onNonLazyError: () => {},
        });
        after(() => client.dispose());
        return client;
      };
      let goneClosed: number | undefined;
      let staysClosed: number | undefined;
      const goneWs = subscribeWs(
        ws(CANARY, (code) => (goneClosed = code)),
        'subscription { jobEvents { kind jobId } }',
      );
      const staysWs = subscribeWs(
        ws(OTHER, (code) => (staysClosed = code)),
        'subscription { jobEvents { kind jobId } }',
      );
      const sse = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${CANARY}` },
        body: JSON.stringify({ query: 'subscription { jobEvents { kind jobId } }' }),
      });
      assert.equal(sse.status, 200);
      const frames = sseFrames(sse.body!);
      await waitFor(() => h.bus.subscriptionCount >= 3, 'three subscriptions');
      await h.jobs.create({ id: 'first', name: 'F', externalCall: 'Test:ok', period: '1:0:0' });
      await goneWs.until(1);
      await staysWs.until(1);
      assert.equal((await frames.next()).value!.event, 'next');

      // The line of `gone` is removed (the file replaced by a rename, as editors do).
      const removedAt = Date.now();
      fs.writeFileSync(`${file}.new`, `stays:viewer:${OTHER}\n`);
      fs.renameSync(`${file}.new`, file);
      await waitFor(() => goneClosed !== undefined, 'the removed token’s graphql-ws connection to close', { timeoutMs: 5000 });
      assert.equal(goneClosed, 4401);
      const errorFrame = (await frames.next()).value!;
      assert.equal(errorFrame.event, 'next');
      const errorBody = JSON.parse(errorFrame.data) as { errors: { extensions: { code: string } }[] };
      assert.deepEqual(errorBody.errors[0]!.extensions, { code: 'UNAUTHENTICATED' });
      assert.equal((await frames.next()).value!.event, 'complete');
      assert.ok(Date.now() - removedAt < 5000, `ended within 5 s (${Date.now() - removedAt} ms)`);

      // The other token's subscription goes on; the removed token is refused from now on.
      await h.jobs.create({ id: 'second', name: 'S', externalCall: 'Test:ok', period: '1:0:0' });
      await staysWs.until(2);
      assert.equal(staysClosed, undefined);
      assert.equal((await overHttp(url, 'none', '{ me { name } }')).status, 401);
      const refused = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CANARY}` },
        body: '{"query":"{ me { name } }"}',
      });
      assert.equal(refused.status, 401);

      // A line added later is taken; a hashed one too.
      fs.writeFileSync(file, `stays:viewer:${OTHER}\nback:admin:sha256:${sha256(CANARY).toString('hex')}\n`);
      const me = async (token: string) =>
        (
          await fetch(url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: '{"query":"{ me { name role } }"}',
          })
        ).text();
      await waitFor(async () => (await me(CANARY)).includes('"back"'), 'the added token to be accepted', { timeoutMs: 5000 });

      // A file that cannot be used accepts no token at all (never the API open), until it is fixed.
      fs.writeFileSync(file, `stays:viewer:${OTHER}\nbroken line ${CANARY}\n`);
      await waitFor(async () => (await me(OTHER)).includes('UNAUTHENTICATED'), 'every token refused', { timeoutMs: 5000 });
      await waitFor(() => staysClosed !== undefined, 'the remaining connection to close too', { timeoutMs: 5000 });
      assert.equal(staysClosed, 4401);
      fs.writeFileSync(file, `stays:viewer:${OTHER}\n`);
      await waitFor(async () => (await me(OTHER)).includes('"stays"'), 'the fixed file to be taken', { timeoutMs: 5000 });

      assert.ok(
        lines.some((l) => l.includes('AUTH_TOKENS_FILE cannot be used') && l.includes('line 2')),
        'the bad file was logged',
      );
      for (const line of lines) assert.ok(!line.includes(CANARY) && !line.includes(OTHER), `a token in the log: ${line}`);
    },
  );
});

// The web-facing settings (SPEC §8): TLS served by the service itself (HTTPS and WSS), starts
// refused for a setting the service cannot honour (a lone or unreadable TLS file, a bad list, a
// variable that looks like a setting but is none), and the rules behind the Host allow-list and
// the WebSocket Origin check.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { ConfigError, loadConfig, SETTINGS } from '../src/config.ts';
import { isHostAllowed, isSocketOriginAllowed } from '../src/http/web-guard.ts';
import { parseAllowedHosts, parseCorsOrigins } from '../src/http/web-settings.ts';
import { unknownSettingProblems } from '../src/setting-names.ts';
import { snapshot, testDatabase } from './helpers/db.ts';
import { isListening, ServiceProcess, stopAll, waitFor } from './helpers/process.ts';
import { rawRequest } from './helpers/web.ts';

const db = await testDatabase();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'web-settings-'));
after(async () => {
  await stopAll();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
const NO_OPENSSL = 'openssl is not installed (apt-get install openssl): no self-signed certificate to test TLS with';

/** A self-signed certificate for localhost and 127.0.0.1, made by openssl; its files. */
function selfSigned(name: string): { cert: string; key: string } {
  const cert = path.join(tmp, `${name}.crt`);
  const key = path.join(tmp, `${name}.key`);
  const made = spawnSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { encoding: 'utf8' },
  );
  assert.equal(made.status, 0, made.stderr);
  return { cert, key };
}

/** Starts the service with these settings and expects it to refuse: exit 1, the database untouched; resolves with what it printed. */
async function refusedStart(env: Record<string, string>): Promise<string> {
  const before = await snapshot(db.sql);
  const service = new ServiceProcess({ DATABASE_URL: db.url, ...env });
  const exit = await service.waitForExit(30_000);
  assert.equal(exit.code, 1, service.output);
  assert.ok(!service.records.some(isListening), 'it listened');
  assert.deepEqual(await snapshot(db.sql), before);
  return service.stderr + service.stdout;
}

describe('TLS', () => {
  it(
    'should serve HTTPS and WSS with TLS_CERT_FILE and TLS_KEY_FILE',
    { skip: hasOpenssl ? false : NO_OPENSSL, timeout: 90_000 },
    async () => {
      const { cert, key } = selfSigned('server');
      const ca = fs.readFileSync(cert);
      const service = new ServiceProcess({ DATABASE_URL: db.url, TLS_CERT_FILE: cert, TLS_KEY_FILE: key });
      const port = await service.waitUntilListening();
      const listening = service.records.find(isListening)!;
      assert.match(String(listening['url']), /^https:\/\/localhost:\d+\/graphql$/);

      // WSS: a subscription sees a job created over HTTPS.
      class TrustingWebSocket extends WebSocket {
        constructor(url: string | URL, protocols?: string | string[]) {
          super(url, protocols, { ca });
        }
      }
      const client = createClient({ url: `wss://127.0.0.1:${port}/graphql`, webSocketImpl: TrustingWebSocket, retryAttempts: 0 });
      try {
        const event = new Promise<unknown>((resolve) => {
          client.subscribe(
            { query: 'subscription { jobEvents { kind jobId } }' },
            { next: resolve, error: resolve, complete: () => resolve('completed') },
          );
        });
        // Once the subscription has reached the service's bus (its /metrics says so, over HTTPS too), create a job.
        await waitFor(
          async () => /^server_jobs_subscribers(\{[^}]*\})? 1$/m.test((await rawRequest({ port, path: '/metrics', ca })).body),
          'the subscription to reach the service',
        );
        const create = JSON.stringify({
          query:
            'mutation { createJob(input: { id: "over-tls", name: "TLS", externalCall: "ServerOperationConnector:Noop", period: "1:0:0" }) { id } }',
        });
        const response = await rawRequest({ port, method: 'POST', ca, headers: { 'content-type': 'application/json' }, body: create });
        assert.equal(response.status, 200, response.body);
        assert.deepEqual(response.json, { data: { createJob: { id: 'over-tls' } } });
        assert.deepEqual(await event, { data: { jobEvents: { kind: 'JOB_CREATED', jobId: 'over-tls' } } });
      } finally {
        await client.dispose();
      }
      // Plain HTTP on that port gets no answer.
      await assert.rejects(
        rawRequest({
          port,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: '{"query":"{ jobs { id } }"}',
          timeoutMs: 5000,
        }),
      );
    },
  );

  it('should refuse to start with one TLS file, an unreadable one, or a key that is not the certificate’s', async (t) => {
    const lone = await refusedStart({ TLS_CERT_FILE: path.join(tmp, 'any.crt') });
    assert.match(lone, /TLS_CERT_FILE and TLS_KEY_FILE go together/);
    const missing = path.join(tmp, 'missing.key');
    const unreadable = await refusedStart({ TLS_CERT_FILE: '/etc/hostname', TLS_KEY_FILE: missing });
    assert.match(unreadable, new RegExp(`TLS_KEY_FILE: cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(no such file\\)`));
    if (!hasOpenssl) return t.diagnostic(`mismatched pair not tried: ${NO_OPENSSL}`);
    const one = selfSigned('one');
    const two = selfSigned('two');
    const mismatched = await refusedStart({ TLS_CERT_FILE: one.cert, TLS_KEY_FILE: two.key });
    assert.match(mismatched, /are not a PEM certificate and its private key/);
    assert.ok(!mismatched.includes(fs.readFileSync(two.key, 'utf8').split('\n')[1]!), 'the key was echoed');
  });
});

describe('settings that look like ours', () => {
  it('should refuse to start with a misspelt setting, naming the nearest one and never its value', async () => {
    const output = await refusedStart({ AUTH_TOKEN_FILE: '/run/secrets/tokens-s3cr3t', GRAPHQL_MAX_DEPHT: '5' });
    assert.match(output, /AUTH_TOKEN_FILE: not a setting of this service/);
    assert.match(output, /GRAPHQL_MAX_DEPHT: not a setting of this service \(did you mean GRAPHQL_MAX_DEPTH\?\)/);
    assert.ok(!output.includes('s3cr3t'), 'a value was echoed');
  });

  it('should list bad web settings together', async () => {
    const output = await refusedStart({
      ALLOWED_HOSTS: 'http://jobs.example.org',
      CORS_ORIGINS: 'https://dash.example.org/app',
      GRAPHQL_MAX_DEPTH: '0',
      GRAPHIQL: 'maybe',
      MAX_BODY_BYTES: '10',
    });
    for (const name of ['ALLOWED_HOSTS', 'CORS_ORIGINS', 'GRAPHQL_MAX_DEPTH', 'GRAPHIQL', 'MAX_BODY_BYTES'])
      assert.match(output, new RegExp(`${name}: `));
  });

  it('should take lookalikes for settings and leave ordinary variables alone', () => {
    const problems = (env: Record<string, string>) => unknownSettingProblems(env, SETTINGS);
    for (const name of [
      'AUTH_TOKEN_FILE',
      'PROT',
      'port',
      'DATADIR',
      'LOG_FORMAT',
      'TLS_CERT',
      'CORS_ORIGIN',
      'ALLOWED_HOST',
      'SECRET_KEY',
      'GRAPHQL_DEPTH',
      'INSTANCE_NAME',
      'EMBEDDED_PG_PASSWORD',
    ]) {
      assert.equal(problems({ [name]: 'x' }).length, 1, `${name} was not refused`);
    }
    const ordinary = [
      'PATH',
      'HOME',
      'HOSTNAME',
      'HOSTTYPE',
      'PWD',
      'OLDPWD',
      'USER',
      'SHELL',
      'TERM',
      'LANG',
      'TZ',
      'CI',
      'NODE_OPTIONS',
      'NODE_ENV',
      'npm_config_cache',
      'npm_lifecycle_event',
      'PGPASSWORD',
      'PGHOST',
      'SSL_CERT_FILE',
      'SSL_CERT_DIR',
      'NODE_EXTRA_CA_CERTS',
      'TEST_DATABASE_URL',
      'CHAOS_DATABASE_URL',
      'MARKING_CODES_SOURCE_URL',
      'DOCUMENTS_KEEP_DAYS',
      'GITHUB_RUN_ID',
      'LC_ALL',
      'HTTP_PROXY',
      'NO_PROXY',
    ];
    assert.deepEqual(problems(Object.fromEntries(ordinary.map((name) => [name, 'x']))), []);
    // Kubernetes' variables for a service named auth in the pod's namespace.
    const serviceLinks = {
      AUTH_SERVICE_HOST: '10.0.0.7',
      AUTH_SERVICE_PORT: '443',
      AUTH_SERVICE_PORT_HTTPS: '443',
      AUTH_PORT: 'tcp://10.0.0.7:443',
      AUTH_PORT_443_TCP: 'tcp://10.0.0.7:443',
      AUTH_PORT_443_TCP_ADDR: '10.0.0.7',
      AUTH_PORT_443_TCP_PROTO: 'tcp',
      AUTH_PORT_443_TCP_PORT: '443',
    };
    assert.deepEqual(problems(serviceLinks), []);
    assert.equal(problems({ AUTH_PORT: '8080' }).length, 1, 'AUTH_PORT without a service link value');
    // This machine's own environment (a test runner's, CI's) starts the service.
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name, value]) => value !== undefined && !SETTINGS.includes(name as never)),
    );
    assert.deepEqual(problems(inherited as Record<string, string>), []);
    assert.throws(
      () => loadConfig({ AUTH_TOKEN_FILE: 'x' }),
      (error: unknown) => error instanceof ConfigError && /did you mean AUTH_TOKENS?_FILE\?/.test(error.message),
    );
  });
});

describe('Host and Origin rules', () => {
  it('should read ALLOWED_HOSTS and CORS_ORIGINS as lists, normalised, and name a bad entry', () => {
    assert.deepEqual(parseAllowedHosts(' Jobs.Example.org, .corp.example ,10.0.0.5,::1,[FD00::1],jobs-1,'), [
      'jobs.example.org',
      '.corp.example',
      '10.0.0.5',
      '[::1]',
      '[fd00::1]',
      'jobs-1',
    ]);
    for (const bad of ['http://jobs', 'jobs:4000', 'a b', '.10.0.0.5', '-jobs', 'jobs/x', '*']) {
      assert.throws(() => parseAllowedHosts(bad), new RegExp(JSON.stringify(bad).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), bad);
    }
    assert.deepEqual(parseCorsOrigins('https://Dash.Example.org, http://localhost:3000,https://x.org:443'), [
      'https://dash.example.org',
      'http://localhost:3000',
      'https://x.org',
    ]);
    for (const bad of [
      'dash.example.org',
      'https://dash.example.org/',
      'https://dash.example.org/app',
      'ftp://x.org',
      'https://u:p@x.org',
      '*',
      'null',
    ]) {
      assert.throws(() => parseCorsOrigins(bad), /is not an origin/, bad);
    }
  });

  const web = {
    bindHost: '127.0.0.1',
    allowedHosts: ['jobs.example.org', '.corp.example', '10.0.0.5', '[fd00::1]'],
    corsOrigins: ['https://dash.example.org'],
  };

  it('should allow the loopback names, HOST when it names one address, and ALLOWED_HOSTS, port ignored', () => {
    for (const host of [
      'localhost',
      'localhost:4000',
      '127.0.0.1:4000',
      '[::1]:4000',
      'LocalHost',
      'jobs.example.org',
      'JOBS.example.org.:443',
      'corp.example',
      'a.b.corp.example:8080',
      '10.0.0.5:4000',
      '[fd00::1]:4000',
    ]) {
      assert.ok(isHostAllowed(host, web), host);
    }
    for (const host of [
      undefined,
      '',
      'evil.example',
      'jobs.example.org.evil.example',
      'notcorp.example',
      'corp.example.evil',
      '10.0.0.6',
      '127.0.0.2',
      '0.0.0.0',
      'localhost:4000:1',
      'user@localhost',
      '[::1',
    ]) {
      assert.ok(!isHostAllowed(host, web), String(host));
    }
    assert.ok(isHostAllowed('10.1.2.3:4000', { bindHost: '10.1.2.3', allowedHosts: [] }), 'the bound address');
    assert.ok(isHostAllowed('jobs-1:4000', { bindHost: 'jobs-1', allowedHosts: [] }), 'the bound name');
    assert.ok(!isHostAllowed('0.0.0.0:4000', { bindHost: '0.0.0.0', allowedHosts: [] }), '0.0.0.0 is no name');
    assert.ok(!isHostAllowed('[::]:4000', { bindHost: '::', allowedHosts: [] }), ':: is no name');
  });

  it('should let a WebSocket in with no Origin, its own origin or a CORS_ORIGINS one, and no other', () => {
    assert.ok(isSocketOriginAllowed(undefined, 'localhost:4000', web));
    assert.ok(isSocketOriginAllowed('http://localhost:4000', 'localhost:4000', web));
    assert.ok(isSocketOriginAllowed('https://jobs.example.org', 'jobs.example.org', web));
    assert.ok(isSocketOriginAllowed('https://dash.example.org', 'localhost:4000', web));
    for (const origin of ['https://evil.example', 'http://localhost:4001', 'null', 'https://dash.example.org:444', 'not a url']) {
      assert.ok(!isSocketOriginAllowed(origin, 'localhost:4000', web), origin);
    }
  });
});

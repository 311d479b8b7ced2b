import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { ConfigError, loadConfig, SETTINGS } from '../src/config.ts';
import { problemsOf } from './helpers/config.ts';

describe('configuration', () => {
  it('should apply the defaults and listen on loopback only when there are no tokens', () => {
    const config = loadConfig({});
    assert.equal(config.PORT, 4000);
    assert.equal(config.HOST, '127.0.0.1');
    assert.equal(config.DATA_DIR, './data');
    assert.equal(config.SERVER_OPERATIONS_DIR, './operations');
    assert.equal(config.LEASE_SECONDS, 15);
    assert.equal(config.SHUTDOWN_GRACE_SECONDS, 10);
    assert.equal(config.LOG_RETENTION_DAYS, 30);
    assert.equal(config.RUN_RETENTION_DAYS, 30);
    assert.equal(config.SERVER_OPERATIONS_WORKERS, Math.min(64, os.availableParallelism()));
    assert.match(config.INSTANCE_ID, /-\d+$/);
    assert.ok(Object.isFrozen(config));
  });

  it('should treat empty values as unset', () => {
    assert.equal(loadConfig({ PORT: '', DATABASE_URL: '' }).PORT, 4000);
  });

  it('should name every bad value at once', () => {
    assert.throws(
      () =>
        loadConfig({
          PORT: 'abc',
          LEASE_SECONDS: '0',
          DATABASE_URL: 'mysql://x',
          EMBEDDED_PG_PORT: '5432',
          LOG_LEVEL: 'loud',
          HTTP_CONNECTOR_ALLOW_HOSTS: '10.0.0.0/99',
          AUTH_TOKENS: 'a:admin:t',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        for (const name of [
          'PORT',
          'LEASE_SECONDS',
          'DATABASE_URL',
          'EMBEDDED_PG_PORT',
          'LOG_LEVEL',
          'HTTP_CONNECTOR_ALLOW_HOSTS',
          'AUTH_TOKENS',
        ]) {
          assert.ok(
            error.problems.some((p) => p.includes(name)),
            `no problem names ${name}: ${error.message}`,
          );
        }
        return true;
      },
    );
  });

  it('should take AUTH_TOKENS as name:role:token entries, and refuse it together with AUTH_TOKENS_FILE', () => {
    const config = loadConfig({ AUTH_TOKENS: 'ops:operator:0123456789abcdef0123, grafana:viewer:fedcba9876543210fedc' });
    assert.deepEqual(
      config.AUTH_TOKENS.entries.map((e) => e.principal),
      [
        { name: 'ops', role: 'operator' },
        { name: 'grafana', role: 'viewer' },
      ],
    );
    assert.equal(loadConfig({}).AUTH_TOKENS.entries.length, 0, 'no tokens: auth is off');
    assert.match(problemsOf({ AUTH_TOKENS: 'a:admin:0123456789abcdef0123', AUTH_TOKENS_FILE: '/nonexistent' }).join('\n'), /both are set/);
    // auth-tokens.test.ts checks each kind of bad entry and line.
    assert.match(problemsOf({ AUTH_TOKENS: 'ops:operator:secret' }).join('\n'), /^AUTH_TOKENS: entry 1: the token must be at least 16/);
  });

  it('should take SERVER_OPERATIONS_WORKERS from 1 to 64', () => {
    assert.equal(loadConfig({ SERVER_OPERATIONS_WORKERS: '3' }).SERVER_OPERATIONS_WORKERS, 3);
    assert.equal(loadConfig({ SERVER_OPERATIONS_WORKERS: '64' }).SERVER_OPERATIONS_WORKERS, 64);
    for (const bad of ['0', '65', '2.5', 'many']) {
      assert.match(problemsOf({ SERVER_OPERATIONS_WORKERS: bad }).join('\n'), /^SERVER_OPERATIONS_WORKERS: /, bad);
    }
  });

  it('should refuse a HOST that is neither an IP address nor a host name', () => {
    for (const good of ['127.0.0.1', '0.0.0.0', '::', '::1', 'localhost', 'jobs-1', 'jobs.example.org', 'server_jobs_1']) {
      assert.equal(loadConfig({ HOST: good }).HOST, good);
    }
    for (const bad of [
      '10.0.0.256',
      '1.2.3',
      'localhost:4000',
      '[::1]',
      'http://jobs',
      'two words',
      '-jobs',
      'jobs-.local',
      'a..b',
      'x'.repeat(64),
    ]) {
      assert.match(problemsOf({ HOST: bad }).join('\n'), /^HOST: must be an IP address/, bad);
    }
  });

  it('should refuse a SERVER_OPERATIONS_DIR that does not exist or is not a directory', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'config-ops-'));
    try {
      assert.equal(loadConfig({ SERVER_OPERATIONS_DIR: tmp }).SERVER_OPERATIONS_DIR, tmp);
      const missing = path.join(tmp, 'nope');
      assert.deepEqual(problemsOf({ SERVER_OPERATIONS_DIR: missing }), [
        `SERVER_OPERATIONS_DIR: no such directory: ${missing} (got ${JSON.stringify(missing)})`,
      ]);
      const file = path.join(tmp, 'ops.mjs');
      fs.writeFileSync(file, 'export default {};\n');
      assert.match(problemsOf({ SERVER_OPERATIONS_DIR: file }).join('\n'), /^SERVER_OPERATIONS_DIR: .*ops\.mjs is not a directory/);
      // Listed with the other bad values, not instead of them.
      assert.equal(problemsOf({ SERVER_OPERATIONS_DIR: missing, HOST: 'a b', PORT: 'x' }).length, 3);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('should never echo a secret: DATABASE_URL, AUTH_TOKENS, or a password in any value', () => {
    const secret = 's3cr3t-pa55';
    const cases: [Record<string, string>, string][] = [
      [{ DATABASE_URL: `mysql://user:${secret}@host/db` }, 'DATABASE_URL'],
      [{ DATABASE_URL: `postgres://user:${secret} x@[bad` }, 'DATABASE_URL'],
      [{ DATABASE_URL: `postgres://user:${secret}%zz@host/db` }, 'DATABASE_URL'],
      [{ DATABASE_URL: `postgres://user:${secret}@host:99999/db` }, 'DATABASE_URL'],
      [{ AUTH_TOKENS: `ops:operator:${secret}` }, 'AUTH_TOKENS'],
      [{ PORT: `postgres://user:${secret}@host/db` }, 'PORT'],
      [{ HOST: `user:${secret}@host` }, 'HOST'],
      [{ HTTP_CONNECTOR_ALLOW_HOSTS: `10.0.0.0/8,user:${secret}@host` }, 'HTTP_CONNECTOR_ALLOW_HOSTS'],
    ];
    for (const [env, name] of cases) {
      const problems = problemsOf(env);
      assert.ok(
        problems.some((p) => p.startsWith(`${name}: `)),
        `${JSON.stringify(env)}: ${problems.join('; ')}`,
      );
      assert.ok(!problems.join('\n').includes(secret), `${name}'s secret echoed: ${problems.join('; ')}`);
    }
  });

  it('should accept exactly the DATABASE_URLs postgres.js can read', async () => {
    const urls = [
      'postgres://user:password@db.example.org:5433/jobs?sslmode=require',
      'postgresql://localhost/jobs',
      'postgres://user:p%40ss%20word@host/db',
      'postgres://user:pa ss@host/db',
      'postgres://u:p@h1:5432,h2:5433/db',
      'postgres://[::1]:5432/db',
      'postgres://user:pa ss@[bad',
      'postgres://user:p%zz@host/db',
      'postgres://u%E0%A4%A@host/db',
      'postgres://host:99999/db',
      'postgres://host:port/db',
      'postgres://us[er:pass@host/db',
    ];
    for (const url of urls) {
      let driverError: unknown = null;
      try {
        await postgres(url, { max: 1 }).end();
      } catch (error) {
        driverError = error;
      }
      const problems = problemsOf({ DATABASE_URL: url });
      assert.equal(
        problems.length > 0,
        driverError !== null,
        `${url}: config says ${problems.join('; ') || 'ok'}, postgres.js says ${String(driverError ?? 'ok')}`,
      );
    }
  });

  it('should have every setting listed in .env.example, with a comment, and in the README', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const example = fs.readFileSync(path.join(root, '.env.example'), 'utf8').split('\n');
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    for (const name of SETTINGS) {
      const line = example.findIndex((l) => l.startsWith(`${name}=`));
      assert.ok(line > 0, `.env.example has no ${name}=`);
      assert.match(example[line - 1]!, /^# /, `.env.example: ${name} has no comment above it`);
      assert.ok(readme.includes(`| \`${name}\` |`), `README's configuration table has no row for ${name}`);
    }
    // And nothing else, in the same order: a setting renamed or removed in config.ts leaves no
    // stale line behind. The example operations' own variables come after the service's.
    const examples = example.findIndex((l) => l.startsWith('# --- The example operations'));
    assert.ok(examples > 0, '.env.example has no "# --- The example operations" section');
    const listed = example.slice(0, examples).flatMap((l) => /^([A-Z][A-Z0-9_]*)=/.exec(l)?.[1] ?? []);
    assert.deepEqual(listed, SETTINGS, ".env.example's service settings are not config.ts's SETTINGS");
    const rows = [...readme.matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| [^|]* \| (?!Example operations:)/gm)].map((m) => m[1]);
    assert.deepEqual(rows, SETTINGS, "README's configuration table (less the example operations' rows) is not config.ts's SETTINGS");
  });
});

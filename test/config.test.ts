import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

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
        for (const name of ['PORT', 'LEASE_SECONDS', 'DATABASE_URL', 'EMBEDDED_PG_PORT', 'LOG_LEVEL', 'HTTP_CONNECTOR_ALLOW_HOSTS', 'AUTH_TOKENS']) {
          assert.ok(error.problems.some((p) => p.includes(name)), `no problem names ${name}: ${error.message}`);
        }
        return true;
      },
    );
  });

  it('should refuse AUTH_TOKENS rather than run unprotected on a build without token auth', () => {
    assert.throws(() => loadConfig({ AUTH_TOKENS: 'ops:operator:secret' }), /AUTH_TOKENS/);
  });
});

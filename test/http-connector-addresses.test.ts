// Where an HTTP connector may connect (SPEC §8), in real calls: refused destinations, names that
// resolve to them and redirects to them are refused before any connection is attempted.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EMPTY_ALLOW_LIST, parseAllowList } from '../src/connectors/address-policy.ts';
import { connector, context, failure, fakeDns, origin, port, recorded, requestedHosts, routes } from './helpers/http-testbed.ts';

describe('address policy in calls', () => {
  it('should refuse loopback when it is not on the allow-list, without connecting', async () => {
    const before = requestedHosts.length;
    const error = await failure(connector({}, { allow: EMPTY_ALLOW_LIST }).call('Ping', context()));
    assert.equal(error.message, `POST ${origin}/Ping refused: loopback address, not on HTTP_CONNECTOR_ALLOW_HOSTS`);
    assert.equal(recorded.length, 0);
    assert.equal(requestedHosts.length, before, 'no request was even created');
  });

  it('should refuse a host name that resolves to loopback unless the name is allow-listed', async () => {
    const lookup = fakeDns({ 'onec.internal': ['127.0.0.1'] });
    const baseUrl = `http://onec.internal:${port}/hs`;
    const refused = await failure(connector({ baseUrl }, { allow: EMPTY_ALLOW_LIST, lookup }).call('Ping', context()));
    assert.equal(
      refused.message,
      `POST ${baseUrl}/Ping refused: onec.internal resolves to 127.0.0.1, a loopback address, not on HTTP_CONNECTOR_ALLOW_HOSTS`,
    );
    assert.equal(recorded.length, 0);

    // The name, in any case, allows it; the socket connects to the address that was checked.
    await connector({ baseUrl }, { allow: parseAllowList(' OneC.Internal '), lookup }).call('Ping', context());
    assert.equal(recorded.length, 1);
    assert.equal(recorded[0]?.headers.host, `onec.internal:${port}`);
  });

  it('should refuse a host when any of its addresses is refused, even one it would not use', async () => {
    const lookup = fakeDns({ 'twofaced.test': ['127.0.0.1', '169.254.169.254'] });
    const error = await failure(
      connector({ baseUrl: `http://twofaced.test:${port}` }, { allow: parseAllowList('twofaced.test'), lookup }).call('Ping', context()),
    );
    assert.match(error.message, /refused: twofaced\.test resolves to 169\.254\.169\.254, a link-local address \(cloud metadata\)$/);
    assert.equal(recorded.length, 0);
  });

  it('should refuse a redirect to the metadata address without connecting to it', async () => {
    routes.set('/Steal', (_req, res) => res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end());
    const before = requestedHosts.length;
    const error = await failure(connector().call('Steal', context()));
    assert.equal(error.message, 'redirect to http://169.254.169.254/latest/meta-data refused: link-local address (cloud metadata)');
    assert.deepEqual(requestedHosts.slice(before), ['127.0.0.1'], 'only the first hop was requested');
    assert.equal(recorded.length, 1);
  });

  it('should refuse a redirect to a name that resolves to a refused address, before connecting', async () => {
    routes.set('/Rebind', (_req, res) => res.writeHead(307, { location: 'http://metadata.test/computeMetadata/v1/' }).end());
    const lookup = fakeDns({ 'metadata.test': ['169.254.169.254'] });
    const error = await failure(connector({}, { lookup }).call('Rebind', context()));
    assert.equal(
      error.message,
      'redirect to http://metadata.test/computeMetadata/v1/ refused: metadata.test resolves to 169.254.169.254, a link-local address (cloud metadata)',
    );
    assert.equal(recorded.length, 1);
  });

  it('should refuse a redirect to a scheme other than http and https', async () => {
    routes.set('/File', (_req, res) => res.writeHead(301, { location: 'file:///etc/passwd' }).end());
    const error = await failure(connector().call('File', context()));
    assert.equal(error.message, 'redirect to file:///etc/passwd refused: only http and https are allowed');
  });

  it('should follow a redirect to another allowed path, keeping POST on 307 and credentials on the same origin', async () => {
    routes.set('/Old', (_req, res) => res.writeHead(307, { location: '/new/place' }).end('moved'));
    await connector({ authScheme: 'BEARER', secret: 'token-123' }).call('Old', context());
    assert.deepEqual(
      recorded.map((r) => [r.method, r.path, r.headers['authorization'], r.headers['x-run-id']]),
      [
        ['POST', '/Old', 'Bearer token-123', 'run-7'],
        ['POST', '/new/place', 'Bearer token-123', 'run-7'],
      ],
    );
  });

  it('should switch to GET after a 303', async () => {
    routes.set('/See', (_req, res) => res.writeHead(303, { location: '/other' }).end());
    await connector().call('See', context());
    assert.deepEqual(
      recorded.map((r) => [r.method, r.path]),
      [
        ['POST', '/See'],
        ['GET', '/other'],
      ],
    );
  });

  it('should not forward credentials or configured headers to another origin', async () => {
    routes.set('/Away', (_req, res) => res.writeHead(308, { location: `http://localhost:${port}/elsewhere` }).end());
    const lookup = fakeDns({ localhost: ['127.0.0.1'] });
    await connector({ authScheme: 'BEARER', secret: 'token-123', headers: [{ name: 'X-Api-Key', value: 'key-456' }] }, { lookup }).call(
      'Away',
      context(),
    );
    assert.equal(recorded.length, 2);
    assert.equal(recorded[0]?.headers['authorization'], 'Bearer token-123');
    assert.equal(recorded[0]?.headers['x-api-key'], 'key-456');
    assert.equal(recorded[1]?.path, '/elsewhere');
    assert.equal(recorded[1]?.headers['authorization'], undefined);
    assert.equal(recorded[1]?.headers['x-api-key'], undefined);
    assert.equal(recorded[1]?.headers['x-job-id'], 'job-42');
  });

  it('should stop after five redirects', async () => {
    routes.set('/Loop', (_req, res) => res.writeHead(302, { location: '/Loop' }).end());
    const error = await failure(connector().call('Loop', context()));
    assert.equal(error.message, `POST ${origin}/Loop: too many redirects (more than 5)`);
    assert.equal(recorded.length, 6);
  });
});

// Calling an HTTP connector: the request it sends (path, run headers, credentials) and its
// kept-alive connections. Failures: http-connector-failures; destinations: http-connector-addresses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAllowList } from '../src/connectors/address-policy.ts';
import { headerValueProblem } from '../src/connectors/http.ts';
import { connector, context, failure, fakeDns, origin, port, recorded, routes, socketClosed } from './helpers/http-testbed.ts';

describe('calling an HTTP connector', () => {
  it('should POST an empty body to the method as one encoded path segment, with the run headers', async () => {
    const method = 'Кировка Автоматическое/Получение';
    await connector({
      baseUrl: `${origin}/hs/jobs/`,
      headers: [{ name: 'X-Tenant', value: 'north' }],
      authScheme: 'BEARER',
      secret: 'token-123',
    }).call(method, context());

    assert.equal(recorded.length, 1);
    const [request] = recorded;
    assert.equal(request!.method, 'POST');
    assert.equal(
      request!.path,
      '/hs/jobs/%D0%9A%D0%B8%D1%80%D0%BE%D0%B2%D0%BA%D0%B0%20%D0%90%D0%B2%D1%82%D0%BE%D0%BC%D0%B0%D1%82%D0%B8%D1%87%D0%B5%D1%81%D0%BA%D0%BE%D0%B5%2F%D0%9F%D0%BE%D0%BB%D1%83%D1%87%D0%B5%D0%BD%D0%B8%D0%B5',
    );
    assert.equal(decodeURIComponent(request!.path.slice('/hs/jobs/'.length)), method);
    assert.equal(request!.body, '');
    assert.equal(request!.headers['content-length'], '0');
    assert.equal(request!.headers['x-job-id'], 'job-42');
    assert.equal(request!.headers['x-run-id'], 'run-7');
    assert.equal(request!.headers['x-scheduled-at'], '2025-03-04T05:06:07.890Z');
    assert.equal(request!.headers['authorization'], 'Bearer token-123');
    assert.equal(request!.headers['user-agent'], 'server-jobs');
    assert.equal(request!.headers['x-tenant'], 'north');
  });

  it('should send basic credentials as base64 of user:password', async () => {
    await connector({ authScheme: 'BASIC', secret: 'robot:пароль:with-colon' }).call('Ping', context());
    const expected = `Basic ${Buffer.from('robot:пароль:with-colon', 'utf8').toString('base64')}`;
    assert.equal(recorded[0]?.headers['authorization'], expected);
    assert.equal(recorded[0]?.path, '/Ping');
  });

  it('should resolve with nothing on any 2xx answer', async () => {
    routes.set('/Created', (_req, res) => res.writeHead(201).end('{"ok":true}'));
    assert.equal(await connector().call('Created', context()), undefined);
  });

  it('should refuse method names that cannot be a single path segment', async () => {
    for (const method of ['', '.', '..']) {
      const error = await failure(connector().call(method, context()));
      assert.match(error.message, /cannot be a URL path segment/);
    }
    assert.equal(recorded.length, 0);
  });
});

describe('run headers', () => {
  it('should send the job id percent-encoded as UTF-8, a Latin id unchanged', async () => {
    const remote = connector();
    await remote.call('Ping', { ...context(), jobId: 'выгрузка' });
    await remote.call('Ping', { ...context(), jobId: 'job-1.a_b' });
    await remote.call('Ping', { ...context(), jobId: 'Ёлка_2.0-ü' });
    assert.deepEqual(
      recorded.map((r) => r.headers['x-job-id']),
      ['%D0%B2%D1%8B%D0%B3%D1%80%D1%83%D0%B7%D0%BA%D0%B0', 'job-1.a_b', '%D0%81%D0%BB%D0%BA%D0%B0_2.0-%C3%BC'],
    );
  });

  it('should send a BASIC secret as base64 of its UTF-8 bytes (RFC 7617)', async () => {
    await connector({ authScheme: 'BASIC', secret: 'Администратор:пароль' }).call('Ping', context());
    assert.equal(recorded[0]?.headers['authorization'], 'Basic 0JDQtNC80LjQvdC40YHRgtGA0LDRgtC+0YA60L/QsNGA0L7Qu9GM');
  });
});

describe('headerValueProblem', () => {
  it('should accept printable ASCII and refuse everything else, naming the character but not the value', () => {
    assert.equal(headerValueProblem(''), null);
    assert.equal(headerValueProblem(' !"#$%&\'()*+,-./09:;<=>?@AZ[\\]^_`az{|}~'), null);
    const cases: [string, string][] = [
      ['Бухгалтерия', 'U+0411 at position 1'],
      ['tab\there', 'U+0009 at position 4'],
      ['del\x7f', 'U+007F at position 4'],
      ['café', 'U+00E9 at position 4'],
      ['a\nb', 'U+000A at position 2'],
      ['😀x\u00a0', 'U+1F600 at position 1'],
      ['x😀\u00a0', 'U+1F600 at position 2'],
    ];
    for (const [value, where] of cases) {
      assert.equal(
        headerValueProblem(value),
        `has a character outside printable ASCII (${where}); header values must be ASCII characters 0x20–0x7E (percent-encode or base64 other text)`,
        JSON.stringify(value),
      );
    }
  });
});

describe('kept-alive connections', () => {
  it('should send consecutive calls on one connection, and close it when the connector is closed', async () => {
    const remote = connector();
    await remote.call('One', context());
    await remote.call('Two', context());
    assert.equal(recorded.length, 2);
    assert.equal(recorded[1]!.socket, recorded[0]!.socket);
    assert.equal(recorded[0]!.headers.connection, 'keep-alive');
    remote.close();
    await socketClosed.get(recorded[0]!.socket);
  });

  it('should let a call in flight finish when the connector is closed, then close its connection', async () => {
    const remote = connector();
    let release!: () => void;
    const arrived = new Promise<void>((resolve) =>
      routes.set('/Slow', (_req, res) => {
        release = () => res.writeHead(204).end();
        resolve();
      }),
    );
    const call = remote.call('Slow', context());
    await arrived;
    remote.close();
    release();
    await call;
    await socketClosed.get(recorded[0]!.socket);
  });

  it('should close an idle connection after its idle timeout', async () => {
    await connector({}, { freeSocketTimeoutMs: 50 }).call('Ping', context());
    await socketClosed.get(recorded[0]!.socket);
  });

  it('should not keep a connection the server announces it will close within a second', async () => {
    routes.set('/Short', (_req, res) => res.writeHead(204, { 'keep-alive': 'timeout=1' }).end());
    const remote = connector();
    await remote.call('Short', context());
    await socketClosed.get(recorded[0]!.socket);
    await remote.call('Short', context());
    assert.notEqual(recorded[1]!.socket, recorded[0]!.socket);
  });

  it('should not reuse a connection for another host with the same address, nor skip its address check', async () => {
    const lookup = fakeDns({ 'allowed.test': ['127.0.0.1'], 'other.test': ['127.0.0.1'] });
    const remote = connector({ baseUrl: `http://allowed.test:${port}` }, { allow: parseAllowList('allowed.test'), lookup });
    await remote.call('Ping', context());
    routes.set('/Away', (_req, res) => res.writeHead(307, { location: `http://other.test:${port}/there` }).end());
    const error = await failure(remote.call('Away', context()));
    assert.equal(
      error.message,
      `redirect to http://other.test:${port}/there refused: other.test resolves to 127.0.0.1, a loopback address, not on HTTP_CONNECTOR_ALLOW_HOSTS`,
    );
    assert.deepEqual(
      recorded.map((r) => r.path),
      ['/Ping', '/Away'],
    );
    assert.equal(recorded[1]!.socket, recorded[0]!.socket, 'the allowed host kept its connection');
  });

  it('should send again once when a kept connection was closed by the server, never on a new one', async () => {
    const remote = connector();
    await remote.call('Ping', context());
    const kept = recorded[0]!.socket;
    routes.set('/Race', (req, res) => (req.socket === kept ? req.socket.destroy() : res.writeHead(204).end()));
    await remote.call('Race', context());
    assert.deepEqual(
      recorded.map((r) => [r.path, r.socket === kept]),
      [
        ['/Ping', true],
        ['/Race', true],
        ['/Race', false],
      ],
    );

    routes.set('/Drop', (req) => req.socket.destroy());
    const error = await failure(connector().call('Drop', context()));
    assert.equal(error.message, `POST ${origin}/Drop failed: the server closed the connection without an answer`);
    assert.equal(recorded.filter((r) => r.path === '/Drop').length, 1);
  });
});

import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { createServer, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { checkAddress, EMPTY_ALLOW_LIST, parseAllowList } from '../src/connectors/address-policy.ts';
import { headerValueProblem, HttpConnector, validateBaseUrl, type HostLookup, type HttpConnectorConfig } from '../src/connectors/http.ts';
import { CallTimeoutError, type CallContext } from '../src/connectors/types.ts';
import type { Sql } from '../src/db/client.ts';

// Only loopback addresses are ever connected to: every other destination below must be refused
// before a connection is attempted.

interface Recorded {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  socket: Socket;
}
type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const recorded: Recorded[] = [];
/** Resolves when the server sees a connection close. */
const socketClosed = new WeakMap<Socket, Promise<void>>();
const routes = new Map<string, Handler>();
let server: Server;
let port: number;
let origin: string;

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      recorded.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString(), socket: req.socket });
      const handler = routes.get(req.url ?? '') ?? ((_q: IncomingMessage, r: ServerResponse) => r.writeHead(204).end());
      handler(req, res);
    });
  });
  server.on('connection', (socket: Socket) => socketClosed.set(socket, new Promise((resolve) => socket.once('close', () => resolve()))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
});
beforeEach(() => {
  recorded.length = 0;
  routes.clear();
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

// Every request this process creates, to prove that refused destinations are never even tried.
const requestedHosts: string[] = [];
const onRequest = (message: unknown) => requestedHosts.push((message as { request: ClientRequest }).request.host);
diagnostics.subscribe('http.client.request.start', onRequest);
after(() => diagnostics.unsubscribe('http.client.request.start', onRequest));

const loopbackOnly = parseAllowList('127.0.0.1');
const SCHEDULED_AT = new Date('2025-03-04T05:06:07.890Z');

function context(signal: AbortSignal = new AbortController().signal): CallContext {
  return {
    signal,
    log: async () => {},
    jobId: 'job-42',
    runId: 'run-7',
    scheduledAt: SCHEDULED_AT,
    sql: {} as unknown as Sql,
  };
}

function connector(
  config: Partial<HttpConnectorConfig> = {},
  options: { allow?: ReturnType<typeof parseAllowList>; maxBodyBytes?: number; lookup?: HostLookup; freeSocketTimeoutMs?: number } = {},
): HttpConnector {
  return new HttpConnector(
    { id: 'Remote', baseUrl: origin, headers: [], authScheme: null, secret: null, timeoutSeconds: null, ...config },
    { allow: loopbackOnly, ...options },
  );
}

/** A fake resolver: the listed names only, nothing ever reaches real DNS. */
const fakeDns =
  (names: Record<string, string[]>): HostLookup =>
  async (hostname) => {
    const addresses = names[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

/** Resolves with the error the promise rejects with. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, 'connectors reject with Errors');
    return error;
  }
  assert.fail('expected the call to fail');
}

/** A response that never ends: it writes until the client goes away, then resolves. */
function endlessBody(status: number, served: { bytes: number; closed?: Promise<void> }): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(16 * 1024, 'y');
    served.closed = new Promise((resolve) => res.on('close', () => resolve()));
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) served.bytes += chunk.length;
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  };
}

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

describe('failures', () => {
  it('should reject a non-2xx answer with the method, URL, status and an excerpt of the body', async () => {
    routes.set('/Load', (_req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end('database is down\nretry later'));
    const error = await failure(connector().call('Load', context()));
    assert.equal(error.message, `HTTP 500 Internal Server Error from POST ${origin}/Load: database is down retry later`);
    assert.ok(!(error instanceof CallTimeoutError));
  });

  it('should bound the excerpt of a long error body to 500 characters', async () => {
    routes.set('/Long', (_req, res) => res.writeHead(502).end('e'.repeat(5000)));
    const error = await failure(connector().call('Long', context()));
    const excerpt = error.message.slice(error.message.indexOf(': ') + 2);
    assert.match(error.message, /^HTTP 502 Bad Gateway from POST /);
    assert.equal(excerpt, `${'e'.repeat(500)}…`);
  });

  it('should read an endless error body only up to the bound, then close the connection', async () => {
    const served = { bytes: 0 } as { bytes: number; closed?: Promise<void> };
    routes.set('/Flood', endlessBody(500, served));
    const error = await failure(connector({}, { maxBodyBytes: 1024 }).call('Flood', context()));
    assert.match(error.message, /^HTTP 500 Internal Server Error from POST .*\/Flood: y{500}…$/);
    await served.closed; // the server saw the client go away
  });

  it('should succeed on an endless 2xx body without reading all of it', async () => {
    const served = { bytes: 0 } as { bytes: number; closed?: Promise<void> };
    routes.set('/Stream', endlessBody(200, served));
    await connector({}, { maxBodyBytes: 4096 }).call('Stream', context());
    await served.closed;
  });

  it('should end with a CallTimeoutError when no answer comes within timeoutSeconds', async () => {
    const closed = new Promise<void>((resolve) => routes.set('/Hang', (req) => req.socket.on('close', () => resolve())));
    const startedAt = Date.now();
    const error = await failure(connector({ timeoutSeconds: 1 }).call('Hang', context()));
    assert.ok(error instanceof CallTimeoutError, `a CallTimeoutError, not ${error.name}`);
    assert.equal(error.message, `No answer from POST ${origin}/Hang within 1 s`);
    assert.ok(Date.now() - startedAt >= 900);
    await closed; // the request was aborted, not left open
  });

  it('should say clearly that the connection was refused', async () => {
    const closedServer = createServer();
    await new Promise<void>((resolve) => closedServer.listen(0, '127.0.0.1', resolve));
    const closedPort = (closedServer.address() as AddressInfo).port;
    await new Promise((resolve) => closedServer.close(resolve));

    const error = await failure(connector({ baseUrl: `http://127.0.0.1:${closedPort}/api` }).call('Ping', context()));
    assert.equal(error.message, `POST http://127.0.0.1:${closedPort}/api/Ping failed: connection refused by 127.0.0.1:${closedPort}`);
    assert.ok(!(error instanceof CallTimeoutError));
  });

  it('should stop the request when the run aborts its signal', async () => {
    const abort = new AbortController();
    const closed = new Promise<void>((resolve) =>
      routes.set('/Slow', (req) => {
        req.socket.on('close', () => resolve());
        abort.abort();
      }),
    );
    const error = await failure(connector({ timeoutSeconds: 30 }).call('Slow', context(abort.signal)));
    assert.ok(!(error instanceof CallTimeoutError));
    assert.equal(error.message, `POST ${origin}/Slow aborted: the run was stopped`);
    await closed;
  });

  it('should not send anything when the signal is already aborted', async () => {
    const abort = new AbortController();
    abort.abort();
    const error = await failure(connector().call('Ping', context(abort.signal)));
    assert.match(error.message, /not sent: the run was stopped/);
    assert.equal(recorded.length, 0);
  });

  it('should report an unusable baseUrl when called, without throwing at construction', async () => {
    const remote = connector({ baseUrl: 'ftp://files.example/x' });
    const error = await failure(remote.call('Ping', context()));
    assert.equal(error.message, 'Connector Remote has an unusable baseUrl: baseUrl must start with http:// or https://');
  });
});

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
    await connector(
      { authScheme: 'BEARER', secret: 'token-123', headers: [{ name: 'X-Api-Key', value: 'key-456' }] },
      { lookup },
    ).call('Away', context());
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

describe('secrets', () => {
  const canary = `CANARY-s3cr3t-${Math.random().toString(36).slice(2)}`;
  const echoAuthorization: Handler = (req, res) => res.writeHead(401).end(`you sent ${req.headers['authorization']} and ${canary}`);

  function assertClean(error: Error) {
    const everything = [error.message, String(error), error.stack ?? '', JSON.stringify(error), ...Object.values(error).map(String)].join('\n');
    assert.ok(!everything.includes(canary), `the secret leaked: ${error.message}`);
    assert.ok(!everything.includes('s3cr3t'), `part of the secret leaked: ${error.message}`);
    assert.ok(!everything.includes(Buffer.from(`robot:${canary}`).toString('base64')), `the encoded secret leaked: ${error.message}`);
  }

  it('should never put the secret in an error message, whatever failed', async () => {
    const closedServer = createServer();
    await new Promise<void>((resolve) => closedServer.listen(0, '127.0.0.1', resolve));
    const closedPort = (closedServer.address() as AddressInfo).port;
    await new Promise((resolve) => closedServer.close(resolve));

    routes.set('/Echo', echoAuthorization);
    // The secret straddles the 500-character cut of the excerpt.
    routes.set('/Cut', (_req, res) => res.writeHead(500).end(`${'x'.repeat(490)}${canary} and more`));
    // The secret straddles the byte bound of the body.
    routes.set('/Bound', (_req, res) => res.writeHead(500).end(`${'x'.repeat(290)}${canary} and more`));
    routes.set('/Hang', () => {});
    routes.set('/Leak', (_req, res) => res.writeHead(302, { location: `http://169.254.169.254/?token=${canary}` }).end());

    const bearer = { authScheme: 'BEARER' as const, secret: canary };
    const basic = { authScheme: 'BASIC' as const, secret: `robot:${canary}` };
    const errors = [
      await failure(connector(bearer).call('Echo', context())),
      await failure(connector(basic).call('Echo', context())),
      await failure(connector(bearer).call('Cut', context())),
      await failure(connector(basic).call('Cut', context())),
      await failure(connector(bearer, { maxBodyBytes: 300 }).call('Bound', context())),
      await failure(connector({ ...bearer, timeoutSeconds: 1 }).call('Hang', context())),
      await failure(connector(bearer).call('Leak', context())),
      await failure(connector(bearer, { allow: EMPTY_ALLOW_LIST }).call('Ping', context())),
      await failure(connector({ ...basic, baseUrl: `http://127.0.0.1:${closedPort}` }).call('Ping', context())),
      await failure(connector({ ...bearer, baseUrl: `http://robot:${canary}@127.0.0.1:${port}/` }).call('Ping', context())),
      await failure(connector(bearer, { allow: EMPTY_ALLOW_LIST }).call(`Method-${canary}`, context())),
    ];
    for (const error of errors) assertClean(error);
    assert.match(errors[0]!.message, /^HTTP 401 Unauthorized from POST .*\/Echo: you sent Bearer \[redacted\] and \[redacted\]$/);
    assert.match(errors[1]!.message, /you sent Basic \[redacted\] and \[redacted\]$/);
    assert.match(errors[2]!.message, /: x{490}\[redacted\]…$/);
    assert.match(errors[4]!.message, /: x{290}\[redacted\]…$/);
    assert.ok(errors[5] instanceof CallTimeoutError);
  });
});

describe('validateBaseUrl', () => {
  it('should return the URL normalised, without a trailing slash', () => {
    assert.equal(validateBaseUrl(' https://Example.COM/hs/exchange/ '), 'https://example.com/hs/exchange');
    assert.equal(validateBaseUrl('http://10.0.0.5:8080'), 'http://10.0.0.5:8080');
    assert.equal(validateBaseUrl('http://[::1]:8080/a/'), 'http://[::1]:8080/a');
  });

  it('should refuse what is not an absolute http or https URL with no credentials, query or fragment', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['example.com/hs', /must start with http:\/\/ or https:\/\//],
      ['/relative/path', /must start with http:\/\/ or https:\/\//],
      ['ftp://example.com/', /must start with http:\/\/ or https:\/\//],
      ['javascript:alert(1)', /must start with http:\/\/ or https:\/\//],
      ['https://user:hunter2@example.com/', /must not contain a user name or password/],
      ['https://user@example.com/', /must not contain a user name or password/],
      ['https://example.com/hs?x=1', /must not have a query/],
      ['https://example.com/hs?', /must not have a query/],
      ['https://example.com/hs#top', /fragment/],
    ];
    for (const [text, reason] of cases) {
      assert.throws(() => validateBaseUrl(text), reason, text);
    }
    assert.throws(
      () => validateBaseUrl('https://user:hunter2@example.com/'),
      (error: Error) => !error.message.includes('hunter2'),
    );
  });
});

describe('address policy', () => {
  const none = EMPTY_ALLOW_LIST;

  it('should allow public unicast addresses', () => {
    assert.equal(checkAddress('dns.google', '8.8.8.8', none), null);
    assert.equal(checkAddress('dns.google', '2001:4860:4860::8888', none), null);
    assert.equal(checkAddress('example.com', '::ffff:93.184.216.34', none), null);
    assert.equal(checkAddress('example.com', '64:ff9b::8.8.8.8', none), null, 'NAT64 of a public address');
  });

  it('should refuse private, loopback, unspecified and other special addresses that are not allow-listed', () => {
    const refused: [string, RegExp][] = [
      ['10.1.2.3', /^private address, not on HTTP_CONNECTOR_ALLOW_HOSTS$/],
      ['172.16.0.1', /^private address/],
      ['192.168.1.1', /^private address/],
      ['100.64.0.1', /^private address \(carrier-grade NAT\)/],
      ['fd12:3456::1', /^private address \(unique local\)/],
      ['127.0.0.1', /^loopback address/],
      ['127.200.0.1', /^loopback address/],
      ['::1', /^loopback address/],
      ['::ffff:127.0.0.1', /^loopback address/],
      ['64:ff9b::7f00:1', /^loopback address/],
      ['0.0.0.0', /^unspecified address/],
      ['::', /^unspecified address/],
      ['224.0.0.1', /^multicast address/],
      ['ff02::1', /^multicast address/],
      ['255.255.255.255', /^broadcast address/],
      ['240.0.0.1', /^reserved address/],
      ['192.0.2.1', /^reserved address/],
      ['::7f00:1', /^reserved address/],
    ];
    for (const [address, reason] of refused) {
      assert.match(checkAddress('some.host', address, none) ?? 'allowed', reason, address);
    }
  });

  it('should always refuse link-local and cloud metadata addresses, even allow-listed', () => {
    const everything = parseAllowList('0.0.0.0/0, ::/0, metadata.google.internal, 169.254.169.254, fd00:ec2::254, 100.100.100.200');
    const cases: [string, RegExp][] = [
      ['169.254.169.254', /^link-local address \(cloud metadata\)$/],
      ['::ffff:169.254.169.254', /^link-local address \(cloud metadata\)$/],
      ['::ffff:a9fe:a9fe', /^link-local address \(cloud metadata\)$/],
      ['64:ff9b::a9fe:a9fe', /^link-local address \(cloud metadata\)$/],
      ['fd00:ec2::254', /^cloud metadata address$/],
      ['100.100.100.200', /^cloud metadata address$/],
      ['::ffff:100.100.100.200', /^cloud metadata address$/],
      ['169.254.1.1', /^link-local address$/],
      ['fe80::1', /^link-local address$/],
      ['febf::1', /^link-local address$/],
    ];
    for (const [address, reason] of cases) {
      assert.match(checkAddress('metadata.google.internal', address, everything) ?? 'allowed', reason, address);
    }
  });

  it('should allow a private address by exact IP, by CIDR or by host name', () => {
    assert.equal(checkAddress('onec', '10.1.2.3', parseAllowList('10.0.0.0/8')), null);
    assert.equal(checkAddress('onec', '10.1.2.3', parseAllowList('10.1.2.3')), null);
    assert.notEqual(checkAddress('onec', '10.1.2.4', parseAllowList('10.1.2.3')), null);
    assert.equal(checkAddress('onec', '11.0.0.1', parseAllowList('10.0.0.0/8')), null);
    assert.equal(checkAddress('onec', 'fd00::5', parseAllowList('fc00::/7')), null);
    assert.equal(checkAddress('onec', '::1', parseAllowList('[::1]')), null);
    assert.equal(checkAddress('localhost', '::ffff:127.0.0.1', parseAllowList('127.0.0.1')), null, 'judged as its IPv4');
    assert.equal(checkAddress('ONEC.Corp.Example.', '192.168.5.5', parseAllowList('onec.corp.example')), null);
    assert.equal(checkAddress('onec.corp.example', '192.168.5.5', parseAllowList('OneC.Corp.Example')), null);
    assert.notEqual(checkAddress('other.corp.example', '192.168.5.5', parseAllowList('onec.corp.example')), null);
    assert.notEqual(checkAddress('sub.onec.corp.example', '192.168.5.5', parseAllowList('onec.corp.example')), null, 'exact names only');
  });

  it('should refuse what is not an IP address', () => {
    assert.match(checkAddress('x', 'not-an-ip', none) ?? 'allowed', /not an IP address/);
  });
});

describe('parseAllowList', () => {
  it('should read comma-separated host names, IPs and CIDRs, trimming spaces and skipping empty entries', () => {
    const allow = parseAllowList(' onec.local , 10.0.0.0/8,,192.168.1.10 , fc00::/7, [::1], Сервер.рф ');
    // An international name is kept as URLs spell it (punycode), which is what calls compare.
    assert.deepEqual([...allow.hosts], ['onec.local', new URL('http://сервер.рф/').hostname]);
    assert.deepEqual(
      allow.ranges.map(([address, bits]) => `${address.toString()}/${bits}`),
      ['10.0.0.0/8', '192.168.1.10/32', 'fc00::/7', '::1/128'],
    );
  });

  it('should accept an unset or empty variable as an empty list', () => {
    for (const text of [undefined, '', ' , ']) {
      const allow = parseAllowList(text);
      assert.equal(allow.hosts.size, 0);
      assert.equal(allow.ranges.length, 0);
    }
  });

  it('should throw an error naming an entry that is neither a host name, an IP nor a CIDR', () => {
    for (const bad of ['not a host', 'http://onec.local', '10.0.0.0/33', '300.1.1.1', '10/8', 'fe80::/129', 'under_score-.example', 'a..b']) {
      assert.throws(
        () => parseAllowList(`onec.local, ${bad}`),
        (error: Error) => error.message === `HTTP_CONNECTOR_ALLOW_HOSTS: "${bad}" is neither a host name, an IP address nor a CIDR range`,
        bad,
      );
    }
  });
});

// How an HTTP connector call fails: non-2xx answers and their bounded excerpts, endless bodies,
// timeouts, refused connections, aborts, unusable base URLs, and never a secret in the message.
import assert from 'node:assert/strict';
import { createServer, get, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { EMPTY_ALLOW_LIST } from '../src/connectors/address-policy.ts';
import { readBounded } from '../src/connectors/http-response.ts';
import { CallTimeoutError } from '../src/connectors/types.ts';
import {
  assertReadWithin,
  connector,
  context,
  endlessBody,
  failure,
  type Handler,
  origin,
  port,
  recorded,
  routes,
  SOCKET_READ_BYTES,
} from './helpers/http-testbed.ts';

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
    assertReadWithin('/Flood', 1024, served);
  });

  it('should succeed on an endless 2xx body without reading all of it', async () => {
    const served = { bytes: 0 } as { bytes: number; closed?: Promise<void> };
    routes.set('/Stream', endlessBody(200, served));
    await connector({}, { maxBodyBytes: 4096 }).call('Stream', context());
    await served.closed;
    assertReadWithin('/Stream', 4096, served);
  });

  it('should keep no more of a body than the bound, and say that it cut it', async () => {
    const served = { bytes: 0 } as { bytes: number; closed?: Promise<void> };
    routes.set('/Endless', endlessBody(500, served));
    const res = await new Promise<IncomingMessage>((resolve, reject) => get(`${origin}/Endless`, resolve).on('error', reject));
    const { body, truncated } = await readBounded(res, 1000, new AbortController().signal);
    assert.deepEqual([body.length, truncated], [1000, true]);
    assert.equal(body.toString(), 'y'.repeat(1000));
    await served.closed;
    assert.ok(res.socket.bytesRead <= 1000 + SOCKET_READ_BYTES, `read ${res.socket.bytesRead} bytes`);
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

describe('secrets', () => {
  const canary = `CANARY-s3cr3t-${Math.random().toString(36).slice(2)}`;
  const echoAuthorization: Handler = (req, res) => res.writeHead(401).end(`you sent ${req.headers['authorization']} and ${canary}`);

  function assertClean(error: Error) {
    const everything = [error.message, String(error), error.stack ?? '', JSON.stringify(error), ...Object.values(error).map(String)].join(
      '\n',
    );
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

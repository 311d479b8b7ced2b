// The local HTTP server the HTTP connector tests call, and their shortcuts. Importing this module
// starts the server before the file's tests (and stops it after them), and clears what it recorded
// and its routes before each test: `port`, `origin` and `server` are live bindings, set once it
// listens. Only loopback addresses are ever connected to: every other destination in the tests
// must be refused before a connection is attempted.
import assert from 'node:assert/strict';
import diagnostics from 'node:diagnostics_channel';
import { createServer, type ClientRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, beforeEach } from 'node:test';
import { parseAllowList } from '../../src/connectors/address-policy.ts';
import { HttpConnector, type HostLookup, type HttpConnectorConfig } from '../../src/connectors/http.ts';
import type { CallContext } from '../../src/connectors/types.ts';
import type { Sql } from '../../src/db/client.ts';

export interface Recorded {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  socket: Socket;
}
export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export const recorded: Recorded[] = [];
/** Resolves when the server sees a connection close. */
export const socketClosed = new WeakMap<Socket, Promise<void>>();
export const routes = new Map<string, Handler>();
export let server: Server;
export let port: number;
export let origin: string;

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      recorded.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
        socket: req.socket,
      });
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
  clientRequests.length = 0;
  routes.clear();
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

// Every request this process creates, to prove that refused destinations are never even tried.
export const requestedHosts: string[] = [];
/** And the requests themselves, to count what their sockets read. */
export const clientRequests: ClientRequest[] = [];
const onRequest = (message: unknown) => {
  const { request } = message as { request: ClientRequest };
  requestedHosts.push(request.host);
  clientRequests.push(request);
};
diagnostics.subscribe('http.client.request.start', onRequest);
after(() => diagnostics.unsubscribe('http.client.request.start', onRequest));

export const loopbackOnly = parseAllowList('127.0.0.1');
export const SCHEDULED_AT = new Date('2025-03-04T05:06:07.890Z');

export function context(signal: AbortSignal = new AbortController().signal): CallContext {
  return {
    signal,
    log: async () => {},
    jobId: 'job-42',
    runId: 'run-7',
    scheduledAt: SCHEDULED_AT,
    sql: {} as unknown as Sql,
  };
}

export function connector(
  config: Partial<HttpConnectorConfig> = {},
  options: { allow?: ReturnType<typeof parseAllowList>; maxBodyBytes?: number; lookup?: HostLookup; freeSocketTimeoutMs?: number } = {},
): HttpConnector {
  return new HttpConnector(
    { id: 'Remote', baseUrl: origin, headers: [], authScheme: null, secret: null, timeoutSeconds: null, ...config },
    { allow: loopbackOnly, ...options },
  );
}

/** A fake resolver: the listed names only, nothing ever reaches real DNS. */
export const fakeDns =
  (names: Record<string, string[]>): HostLookup =>
  async (hostname) => {
    const addresses = names[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

/** Resolves with the error the promise rejects with. */
export async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, 'connectors reject with Errors');
    return error;
  }
  assert.fail('expected the call to fail');
}

/** A response that never ends: it writes until the client goes away; `served.bytes` counts what it wrote. */
export function endlessBody(status: number, served: { bytes: number; closed?: Promise<void> }): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    const chunk = Buffer.alloc(16 * 1024, 'y');
    served.closed = new Promise((resolve) => res.on('close', () => resolve()));
    const pump = () => {
      while (!res.destroyed) {
        served.bytes += chunk.length;
        if (!res.write(chunk)) break;
      }
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  };
}

/** How much a client socket reads from the kernel at once (Node's read buffer): a bound can be passed by at most this much. */
export const SOCKET_READ_BYTES = 64 * 1024;

/**
 * The client read the endless body of its request to `path` up to `bound` and at most one more
 * read of its socket (status line and headers included), of the megabytes the server wrote.
 */
export function assertReadWithin(path: string, bound: number, served: { bytes: number }): void {
  const request = clientRequests.find((r) => r.path === path);
  assert.ok(request?.socket, `a request to ${path} was made on a socket`);
  const read = request.socket.bytesRead;
  assert.ok(read <= bound + SOCKET_READ_BYTES, `read ${read} bytes of an endless body with a bound of ${bound}`);
  assert.ok(served.bytes > read, `the server wrote more (${served.bytes} bytes) than the client read`);
}

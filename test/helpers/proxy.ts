import net from 'node:net';
import { after } from 'node:test';

export interface DatabaseProxy {
  /** `targetUrl` with its host and port replaced by the proxy's. */
  url: string;
  /** The database goes away for this proxy's clients: open connections are cut, new ones refused. */
  cut(): Promise<void>;
  /** The database is back: new connections reach it again, on the same address. */
  restore(): Promise<void>;
}

/**
 * A TCP proxy in front of a PostgreSQL server, so that a test can take the database away from
 * one client (and only that client) and bring it back, as a server that is down does: while cut,
 * connecting is refused. (Accepting and closing at once is not the same: postgres.js 3.4.9 then
 * reconnects without end and the query hangs, porsager/postgres#1193.) Closed when the file's
 * tests end.
 */
export async function databaseProxy(targetUrl: string): Promise<DatabaseProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  const listen = (port: number) => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });
  await listen(0);
  const { port } = server.address() as net.AddressInfo;
  after(close);
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return { url: url.toString(), cut: close, restore: () => listen(port) };
}

import net from 'node:net';
import { after } from 'node:test';
import { connect, type Sql } from '../../src/db/client.ts';

export interface DatabaseProxy {
  /** `targetUrl` with its host and port replaced by the proxy's. */
  url: string;
  /** The database goes away for this proxy's clients: open connections are cut, new ones refused. */
  cut(): Promise<void>;
  /** The database is back: new connections reach it again, on the same address. */
  restore(): Promise<void>;
  /**
   * The next reply that reports a COMMIT is lost: the server has committed, but its answer does
   * not reach the client, whose connection is cut instead (as when the network fails right after
   * a commit). Other connections go on. Resolves when it has happened.
   */
  loseNextCommitReply(): Promise<void>;
}

/** A CommandComplete message ('C', its length, then the tag) whose tag is COMMIT. */
const COMMIT_COMPLETE = Buffer.concat([Buffer.from('C'), Buffer.from([0, 0, 0, 11]), Buffer.from('COMMIT\0')]);

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
  let loseCommit: (() => void) | null = null;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {});
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      if (loseCommit && chunk.includes(COMMIT_COMPLETE)) {
        const lost = loseCommit;
        loseCommit = null;
        client.destroy();
        upstream.destroy();
        lost();
      } else if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
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
  return {
    url: url.toString(),
    cut: close,
    restore: () => listen(port),
    loseNextCommitReply: () => new Promise<void>((resolve) => (loseCommit = resolve)),
  };
}

/**
 * A client of the database at `url` through a proxy the test can cut: one instance's database
 * goes away, the test's own client does not. Closed at once when the test ends: whatever it ran
 * has settled by then, and a connection the outage left behind is not waited out.
 */
export async function awayDatabase(url: string, max = 2): Promise<{ proxy: DatabaseProxy; sql: Sql }> {
  const proxy = await databaseProxy(url);
  const db = connect(proxy.url, { max });
  after(() => db.sql.end({ timeout: 0 }));
  return { proxy, sql: db.sql };
}

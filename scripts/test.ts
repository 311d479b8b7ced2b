// `npm test`: runs test/**/*.test.ts with node's test runner against TEST_DATABASE_URL, or, when
// that is not set, against a throwaway embedded PostgreSQL (SPEC §7: passes on a machine with no
// database installed). Test files create their own databases on that server.
//
//   npm test                              all test files
//   npm test -- test/period.test.ts       only files whose path contains an argument
//   npm test -- --test-name-pattern=lease node options (in the `--flag=value` form)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../src/db/embedded.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const filters = args.filter((a) => !a.startsWith('-')).map((a) => path.relative(root, path.resolve(a)).split(path.sep).join('/'));

// Node 20 has no fs glob: walk test/ for *.test.ts.
const all = (await fs.readdir(path.join(root, 'test'), { recursive: true }))
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => `test/${f.split(path.sep).join('/')}`)
  .sort();
const files = filters.length === 0 ? all : all.filter((f) => filters.some((x) => f.includes(x)));
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')} (test files: ${all.join(', ') || 'none'})`);
  process.exit(1);
}

// The runner gets a process group of its own, so that on Ctrl-C (or SIGTERM) we can signal it and
// its test files, and then kill whatever of that group is left.
let runner: ChildProcess | undefined;
let interrupted: NodeJS.Signals | undefined;
const signalGroup = (pid: number | undefined, sig: NodeJS.Signals) => {
  try {
    if (pid) process.kill(-pid, sig);
  } catch {
    /* already gone */
  }
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    interrupted = sig;
    signalGroup(runner?.pid, sig);
  });
}

/** Stops any PostgreSQL a test file started under `dir` and left behind (its servers are detached). */
async function stopStrayServers(dir: string): Promise<void> {
  const pidFiles = (await fs.readdir(dir, { recursive: true })).filter((f) => path.basename(f) === 'postmaster.pid');
  for (const file of pidFiles.map((f) => path.join(dir, f))) {
    const pid = Number.parseInt(await fs.readFile(file, 'utf8').catch(() => ''), 10);
    if (!(pid > 0)) continue;
    try {
      process.kill(pid, 'SIGINT'); // fast shutdown; postgres removes postmaster.pid when done
    } catch {
      continue;
    }
    for (
      let i = 0;
      i < 100 &&
      (await fs.access(file).then(
        () => true,
        () => false,
      ));
      i++
    )
      await new Promise((r) => setTimeout(r, 100));
  }
}

// Everything the tests write to os.tmpdir() (TMPDIR) lands in this one directory, removed at the end.
const tmpDir = await fs.mkdtemp(path.join(os.tmpdir(), 'server-jobs-test-'));
await fs.chmod(tmpDir, 0o755); // as root, servers run as user postgres, which must reach their dirs
let embedded: EmbeddedPostgres | undefined;
let code = 1;
try {
  let url = process.env.TEST_DATABASE_URL;
  if (url) {
    const shown = new URL(url);
    if (shown.password) shown.password = '***';
    console.log(`tests use the PostgreSQL server at ${shown.href} (TEST_DATABASE_URL)`);
  } else {
    const log = { info() {}, warn: (obj: object | string, msg?: string) => console.warn(msg ?? obj, msg ? obj : '') };
    embedded = await startEmbeddedPostgres({ dataDir: path.join(tmpDir, 'server'), database: 'postgres', log });
    url = embedded.url;
    console.log(`tests use a throwaway embedded PostgreSQL at ${url} (set TEST_DATABASE_URL to use another server)`);
  }
  if (interrupted) throw new Error(interrupted);
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const concurrency = major > 20 || (major === 20 && minor >= 10) ? ['--test-concurrency=2'] : [];
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', ...concurrency, ...flags, ...files], {
    cwd: root,
    stdio: 'inherit',
    detached: true,
    env: { ...process.env, TEST_DATABASE_URL: url, TMPDIR: tmpDir },
  });
  runner = child;
  code = await new Promise<number>((resolve) => {
    child.once('error', (e) => (console.error(e), resolve(1)));
    child.once('exit', (c, sig) => resolve(c ?? 128 + (sig ? os.constants.signals[sig] : 0)));
  });
  signalGroup(child.pid, 'SIGKILL'); // test files the runner left running
} catch (e) {
  if (!interrupted) console.error(e); // else: e.g. initdb stopped by the same Ctrl-C
  code = interrupted ? 128 + os.constants.signals[interrupted] : 1;
} finally {
  await embedded?.stop().catch((e: unknown) => console.error(e));
  await stopStrayServers(tmpDir).catch((e: unknown) => console.error(e));
  await fs.rm(tmpDir, { recursive: true, force: true });
}
process.exit(code);

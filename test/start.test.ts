// `npm start` first runs src/check-node.mjs: plain JavaScript that refuses a Node.js older than
// 20.6 with one clear line (SPEC §10) before anything of the service is loaded, then builds dist/
// if src/ changed (scripts/build.mjs) and execs the compiled service (`node dist/main.js`). An old
// Node cannot be installed here, so each case runs the real `npm start` command line
// (scripts.start, through sh as npm runs it) with node preloading a module that makes
// process.versions.node say another version. The build runs on a copy of the sources.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
  engines: { node: string };
};

let tmp: string;
let fake: string;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'start-'));
  fake = path.join(tmp, 'fake-version.mjs');
  fs.writeFileSync(fake, "Object.defineProperty(process.versions, 'node', { value: process.env.FAKE_NODE_VERSION });\n");
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs `npm start`'s command line in node processes that report `version`, with a configuration main.ts refuses. */
function npmStart(version: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn('sh', ['-c', pkg.scripts['start']!], {
    cwd: root,
    env: {
      // This node first on PATH, as npm puts its own.
      PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env['PATH'] ?? ''}`,
      NODE_OPTIONS: `--import=${pathToFileURL(fake).href}`,
      FAKE_NODE_VERSION: version,
      // A PORT the configuration refuses: main.ts, once loaded, says so and exits 1, starting nothing.
      PORT: 'not-a-port',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => (child.kill('SIGKILL'), reject(new Error(`node ${version}: no exit within 30 s\n${stdout}${stderr}`))),
      30_000,
    );
    child.once('close', (code) => (clearTimeout(timer), resolve({ code, stdout, stderr })));
  });
}

describe('the Node.js version check of npm start', { concurrency: true }, () => {
  for (const version of ['16.20.2', '18.19.1', '19.9.0', '20.0.0', '20.5.1']) {
    it(`should refuse Node.js ${version} with one line, loading nothing of the service`, async () => {
      const { code, stdout, stderr } = await npmStart(version);
      assert.equal(code, 1);
      assert.equal(stderr, `Server Jobs needs Node.js 20.6 or newer; this is ${version}.\n`);
      // main.ts never ran: it would have refused PORT.
      assert.equal(stdout, '');
    });
  }

  for (const version of ['20.6.0', '20.19.1', '22.12.0', '24.0.0']) {
    it(`should go on to the service on Node.js ${version}`, async () => {
      const { code, stdout, stderr } = await npmStart(version);
      assert.equal(code, 1, stdout + stderr);
      assert.match(stderr, /^Invalid configuration:\n {2}- PORT: /, 'main.js ran, compiled, and checked the configuration');
    });
  }

  it('should be what the Docker image runs, and what engines says', () => {
    assert.equal(pkg.engines.node, '>=20.6');
    const cmd = /^CMD \["sh", "-c", "(.*)"\]$/m.exec(fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
    assert.equal(cmd?.[1], pkg.scripts['start'], 'the Dockerfile CMD runs what npm start runs');
    assert.match(pkg.scripts['start']!, /^node src\/check-node\.mjs && node scripts\/build\.mjs --if-stale && exec node .*dist\/main\.js$/);
  });
});

describe('the build npm start runs first', () => {
  /** A copy of what the build reads, with the repository's node_modules. */
  function project(): string {
    const dir = fs.mkdtempSync(path.join(tmp, 'build-'));
    for (const entry of ['src', 'scripts/build.mjs', 'tsconfig.json'])
      fs.cpSync(path.join(root, entry), path.join(dir, entry), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
    return dir;
  }
  const build = (dir: string, ...args: string[]) =>
    execFileSync(process.execPath, [path.join(dir, 'scripts/build.mjs'), ...args], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
  const stamp = (dir: string) => fs.statSync(path.join(dir, 'dist/.built-from')).mtimeMs;

  it('should compile every source to a module of its own, importing the others as .js', () => {
    const dir = project();
    build(dir);
    const pool = fs.readFileSync(path.join(dir, 'dist/connectors/operation-pool.js'), 'utf8');
    assert.match(pool, /from "\.\/operation-protocol\.js"/);
    assert.match(pool, /from "piscina"/, 'packages stay imports');
    assert.ok(fs.existsSync(path.join(dir, 'dist/connectors/operation-worker.js')), 'the worker beside its pool');
    const migrations = execFileSync(
      process.execPath,
      ['--input-type=module', '-e', "console.log((await import('./dist/db/migrate.js')).MIGRATIONS_DIR)"],
      { cwd: dir, encoding: 'utf8' },
    );
    assert.equal(migrations.trim(), path.join(dir, 'drizzle'), 'dist/db/migrate.js finds drizzle/ as src/db/migrate.ts does');
    const compiled = fs.readdirSync(path.join(dir, 'dist'), { recursive: true }).map(String);
    assert.deepEqual(
      compiled.filter((f) => /\.ts$/.test(f)),
      [],
      'no TypeScript left',
    );
    assert.deepEqual(
      compiled.filter((f) => /\.js$/.test(f) && /(from |import\()"\.[^"]*\.ts"/.test(fs.readFileSync(path.join(dir, 'dist', f), 'utf8'))),
      [],
      'no import of a .ts file left',
    );
  });

  it('should build only when the sources changed since the last build', () => {
    const dir = project();
    build(dir, '--if-stale');
    const first = stamp(dir);
    build(dir, '--if-stale');
    assert.equal(stamp(dir), first, 'unchanged sources: nothing written');
    fs.appendFileSync(path.join(dir, 'src/clock.ts'), '\nexport const ADDED_BY_THE_TEST = 1;\n');
    build(dir, '--if-stale');
    assert.notEqual(stamp(dir), first, 'an edited source: built again');
    assert.match(fs.readFileSync(path.join(dir, 'dist/clock.js'), 'utf8'), /ADDED_BY_THE_TEST/);
  });
});

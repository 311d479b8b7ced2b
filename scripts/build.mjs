// `npm run build`: compiles src/ to dist/, the JavaScript `npm start` runs (`node dist/main.js`).
// Node then loads plain JavaScript: no TypeScript loader (tsx) in the process and in each of
// its worker threads, which cost about 100 MB of resident memory (issue 11).
//
//   node scripts/build.mjs             build
//   node scripts/build.mjs --if-stale  build only when src/ changed since dist/ was built (what
//                                      `npm start` runs first, so that a fresh clone, a pull or
//                                      an edit needs no step of its own)
//
// One .js (and its source map) per .ts, in the same layout, with the imports' `.ts` suffixes made
// `.js`: what a module finds relative to its own URL (`../../drizzle` from db/migrate.ts, the
// operation worker beside operation-pool.ts) is where it was under src/. Nothing is bundled:
// packages stay imports of node_modules. The compiler is esbuild, the one tsx runs for the tests.
//
// Whether dist/ is current is decided by a hash of what it was built from (the sources, this
// script, tsconfig.json, esbuild's version), not by file times, which a checkout or a copy sets
// as it likes. A build is written beside dist/ and moved in whole, under a lock, so that starts
// at the same moment (two instances, the tests) neither build twice nor run half a build.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = path.join(root, 'src');
const distDir = path.join(root, 'dist');
const stampName = '.built-from';
const lockFile = `${distDir}.lock`;
/** A lock older than this is taken over even if its process still runs (its id was reused). */
const STALE_LOCK_MS = 60_000;

const ifStale = process.argv.includes('--if-stale');

/** The hash of everything a build is made from. */
function fingerprint() {
  const hash = createHash('sha256');
  const esbuildPackage = path.join(root, 'node_modules/esbuild/package.json');
  hash.update(`esbuild ${fs.existsSync(esbuildPackage) ? JSON.parse(fs.readFileSync(esbuildPackage, 'utf8')).version : '?'}\0`);
  hash.update(fs.readFileSync(fileURLToPath(import.meta.url)));
  hash.update(fs.readFileSync(path.join(root, 'tsconfig.json')));
  for (const file of sources()) {
    hash.update(`\0${file}\0`);
    hash.update(fs.readFileSync(path.join(srcDir, file)));
  }
  return hash.digest('hex');
}

/** Every file under src/, relative with `/`, sorted. */
function sources() {
  return fs
    .readdirSync(srcDir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) =>
      path
        .relative(srcDir, path.join(entry.parentPath ?? entry.path, entry.name))
        .split(path.sep)
        .join('/'),
    )
    .sort();
}

const builtFrom = () => {
  try {
    return fs.readFileSync(path.join(distDir, stampName), 'utf8').trim();
  } catch {
    return null;
  }
};

async function lock() {
  for (;;) {
    try {
      fs.writeFileSync(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    if (lockIsStale()) fs.rmSync(lockFile, { force: true });
    else await sleep(100);
  }
}

/** The lock of a build that died (Ctrl-C, a crash) or that is far too old. */
function lockIsStale() {
  let holder;
  try {
    holder = { pid: Number.parseInt(fs.readFileSync(lockFile, 'utf8'), 10), at: fs.statSync(lockFile).mtimeMs };
  } catch {
    return false; // gone meanwhile, or not written yet: ask again
  }
  if (Date.now() - holder.at > STALE_LOCK_MS) return true;
  if (!(holder.pid > 0)) return Date.now() - holder.at > 1000;
  try {
    process.kill(holder.pid, 0);
    return false;
  } catch (error) {
    return error.code === 'ESRCH';
  }
}

async function compile(into, files) {
  const { build } = await import('esbuild');
  await build({
    absWorkingDir: root,
    entryPoints: files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')).map((f) => `src/${f}`),
    outdir: into,
    outbase: 'src',
    format: 'esm',
    platform: 'node',
    target: 'node20.6',
    // npm start runs node with --enable-source-maps: a stack trace names the .ts line, as under tsx.
    sourcemap: 'linked',
    sourcesContent: false,
    // `bundle` only so that every import goes through the plugin below, which keeps each one
    // external: every source stays a module of its own.
    bundle: true,
    plugins: [
      {
        name: 'one-module-per-source',
        setup(compiler) {
          compiler.onResolve({ filter: /.*/ }, (args) => {
            if (args.kind === 'entry-point') return undefined;
            if (/^\.\.?\//.test(args.path)) return { path: args.path.replace(/\.ts$/, '.js'), external: true };
            return { external: true };
          });
        },
      },
    ],
    logLevel: 'warning',
  });
}

let wanted = fingerprint();
if (ifStale && builtFrom() === wanted) process.exit(0);

await lock();
const tmp = `${distDir}.${process.pid}.tmp`;
try {
  // Another start may have built it while this one waited, or the sources changed meanwhile.
  wanted = fingerprint();
  if (!(ifStale && builtFrom() === wanted)) {
    fs.rmSync(tmp, { recursive: true, force: true });
    await compile(tmp, sources());
    fs.writeFileSync(path.join(tmp, stampName), `${wanted}\n`);
    fs.rmSync(distDir, { recursive: true, force: true });
    fs.renameSync(tmp, distDir);
  }
} catch (error) {
  console.error(`Building dist/ from src/ failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(lockFile, { force: true });
}

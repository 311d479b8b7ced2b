// `npm run build:web` (also run by `npm run build` and, when stale, by `npm start`): bundles the
// dashboard (web/, SPEC §11) into web/dist/, which the service serves at `/` (src/http/dashboard.ts).
// The bundler is esbuild, the one scripts/build.mjs and tsx already use: a production dependency,
// so a plain `npm install` brings it and the page builds on a closed network; no CDN, no download.
//
//   node scripts/build-web.mjs             build
//   node scripts/build-web.mjs --if-stale  build only when web/ (or this script, or a bundled
//                                          package's version) changed since the current build
//
// Builds are content-addressed, so that no lock is needed when starts race (two instances, the
// tests): each is written to a directory of its own, renamed to web/dist/<fingerprint>/ (a second
// build of the same fingerprint finds it there and drops its copy), and web/dist/current.json,
// replaced by a rename, names the build to serve. The service reads the files it serves into
// memory once, so removing older builds here never pulls a file from under a running server.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const webDir = path.join(root, 'web');
const distDir = path.join(webDir, 'dist');
const currentFile = path.join(distDir, 'current.json');
/** The packages inside the bundle, and the bundler: a new version of one is a new build. */
const PACKAGES = ['esbuild', 'preact', '@tanstack/virtual-core', 'graphql-ws'];
/** Below this size a file is served as it is: gzip would save too little to be worth a header. */
const GZIP_FROM_BYTES = 1024;

/** Every source file of the page under web/ (not its builds), relative with `/`, sorted. */
function sources() {
  return fs
    .readdirSync(webDir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) =>
      path
        .relative(webDir, path.join(entry.parentPath ?? entry.path, entry.name))
        .split(path.sep)
        .join('/'),
    )
    .filter((file) => !file.startsWith('dist/'))
    .sort();
}

/** The hash of everything a build is made from. */
function fingerprint() {
  const hash = createHash('sha256');
  for (const name of PACKAGES) {
    const file = path.join(root, 'node_modules', name, 'package.json');
    hash.update(`${name} ${fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')).version : '?'}\0`);
  }
  hash.update(fs.readFileSync(fileURLToPath(import.meta.url)));
  for (const file of sources()) {
    hash.update(`\0${file}\0`);
    hash.update(fs.readFileSync(path.join(webDir, file)));
  }
  return hash.digest('hex').slice(0, 16);
}

function current() {
  try {
    return JSON.parse(fs.readFileSync(currentFile, 'utf8'));
  } catch {
    return null;
  }
}

/** The page's HTML: the hashed script and style of the bundle, nothing from elsewhere. */
function indexHtml({ script, style }) {
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="color-scheme" content="light dark" />
    <title>Server Jobs</title>
    <link rel="icon" href="assets/favicon.svg" type="image/svg+xml" />
    <link rel="stylesheet" href="${style}" />
    <script type="module" src="${script}"></script>
  </head>
  <body>
    <div id="app"></div>
    <noscript>The dashboard needs JavaScript. GraphiQL is at <a href="graphql">/graphql</a>.</noscript>
  </body>
</html>
`;
}

/** Bundles web/src/main.tsx (and its CSS) into `into`: index.html and assets/. */
async function compile(into) {
  const { build } = await import('esbuild');
  const result = await build({
    absWorkingDir: root,
    entryPoints: ['web/src/main.tsx'],
    outdir: path.join(into, 'assets'),
    // Hashed names: the service serves them as immutable, so a browser asks for each once.
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    // Browsers of the last few years: everything the page uses is native there.
    target: ['chrome109', 'edge109', 'firefox115', 'safari15.6'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: true,
    sourcemap: 'linked',
    metafile: true,
    legalComments: 'linked',
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((file) =>
    path.relative(into, path.resolve(root, file)).split(path.sep).join('/'),
  );
  const script = outputs.find((file) => file.endsWith('.js'));
  const style = outputs.find((file) => file.endsWith('.css'));
  if (!script || !style) throw new Error(`the bundle lacks a script or a style: ${outputs.join(', ')}`);
  fs.copyFileSync(path.join(webDir, 'favicon.svg'), path.join(into, 'assets', 'favicon.svg'));
  fs.writeFileSync(path.join(into, 'index.html'), indexHtml({ script, style }));
  // Compressed once here, not per request.
  for (const file of fs.readdirSync(into, { recursive: true })) {
    const full = path.join(into, String(file));
    if (!fs.statSync(full).isFile() || full.endsWith('.map') || full.endsWith('.txt')) continue;
    const body = fs.readFileSync(full);
    if (body.length >= GZIP_FROM_BYTES) fs.writeFileSync(`${full}.gz`, gzipSync(body, { level: 9 }));
  }
}

/**
 * Removes the builds other than this one and the one current.json names now (a build of newer
 * sources may have finished meanwhile), and the directories of builds that died.
 */
function removeOthers(own) {
  const keep = new Set([own, current()?.build]);
  for (const entry of fs.readdirSync(distDir, { withFileTypes: true })) {
    if (!entry.isDirectory() || keep.has(entry.name)) continue;
    const tmp = /\.(\d+)\.tmp$/.exec(entry.name);
    if (tmp && isAlive(Number(tmp[1]))) continue; // a build still being written
    fs.rmSync(path.join(distDir, entry.name), { recursive: true, force: true });
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

const ifStale = process.argv.includes('--if-stale');
const wanted = fingerprint();
const built = current();
if (ifStale && built?.build === wanted && fs.existsSync(path.join(distDir, wanted, 'index.html'))) process.exit(0);

fs.mkdirSync(distDir, { recursive: true });
const tmp = path.join(distDir, `${wanted}.${process.pid}.tmp`);
try {
  const target = path.join(distDir, wanted);
  if (!fs.existsSync(path.join(target, 'index.html'))) {
    fs.rmSync(tmp, { recursive: true, force: true });
    await compile(tmp);
    try {
      fs.rmSync(target, { recursive: true, force: true });
      fs.renameSync(tmp, target);
    } catch (error) {
      // Another build of the same sources got there first: its files are these.
      if (!['ENOTEMPTY', 'EEXIST', 'EPERM'].includes(error.code) || !fs.existsSync(path.join(target, 'index.html'))) throw error;
    }
  }
  const pointer = `${currentFile}.${process.pid}.tmp`;
  fs.writeFileSync(pointer, `${JSON.stringify({ build: wanted })}\n`);
  fs.renameSync(pointer, currentFile);
  removeOthers(wanted);
} catch (error) {
  console.error(`Building the dashboard (web/ to web/dist/) failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

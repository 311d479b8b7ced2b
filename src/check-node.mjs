// `npm start` runs this first: `node src/check-node.mjs && node scripts/build.mjs --if-stale &&
// exec node --enable-source-maps dist/main.js`.
//
// An older Node.js must get one clear line, not a stack trace (SPEC §10), and the build and the
// service would fail on one with a stack trace or worse (`--env-file` came in 20.6,
// `AbortSignal.any` in 20.3, the build's recursive readdir in 20.1). So the check is a process of
// its own, in plain JavaScript that old versions can read: keep this file free of newer syntax
// (no top-level await, `?.` or `??`). Then the build (scripts/build.mjs) compiles src/ to dist/
// if src/ changed, and the service replaces the shell (`exec`).
var MINIMUM = [20, 6];

var version = process.versions.node;
var parts = String(version).split('.');
var major = parseInt(parts[0], 10);
var minor = parseInt(parts[1], 10);
if (!(major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1]))) {
  console.error('Server Jobs needs Node.js ' + MINIMUM.join('.') + ' or newer; this is ' + version + '.');
  process.exitCode = 1;
}

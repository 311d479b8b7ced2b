// `npm start` runs this first: `node src/check-node.mjs && exec node --import tsx src/main.ts`.
//
// An older Node.js must get one clear line, not a stack trace (SPEC §10), and the service's own
// command fails on one before any code of ours runs (`--import` is unknown to Node 16, tsx needs
// `module.register`, `--env-file` came in 20.6, `AbortSignal.any` in 20.3). So the check is a
// process of its own, in plain JavaScript that old versions can read: keep this file free of
// newer syntax (no top-level await, `?.` or `??`). The service then replaces the shell (`exec`)
// and runs exactly as before, with `--import tsx` in its execArgv, which worker threads inherit.
var MINIMUM = [20, 6];

var version = process.versions.node;
var parts = String(version).split('.');
var major = parseInt(parts[0], 10);
var minor = parseInt(parts[1], 10);
if (!(major > MINIMUM[0] || (major === MINIMUM[0] && minor >= MINIMUM[1]))) {
  console.error('Server Jobs needs Node.js ' + MINIMUM.join('.') + ' or newer; this is ' + version + '.');
  process.exitCode = 1;
}

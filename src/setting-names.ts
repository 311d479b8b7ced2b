// A misspelt setting is not silently ignored (SPEC §8: never run more open than configured): a
// start with `AUTH_TOKEN_FILE` instead of `AUTH_TOKENS_FILE` would otherwise run with no auth.
// An environment variable that looks like one of ours but is not stops the start, naming the
// nearest setting. Ordinary variables (PATH, HOME, NODE_*, npm_*, PG*, SSL_CERT_FILE, …) never do.

/** Prefixes of the service's settings: a variable starting with one is taken for a setting. */
export const SETTING_PREFIXES: readonly string[] = [
  'AUTH_',
  'TLS_',
  'GRAPHQL_',
  'SECRETS_',
  'HTTP_CONNECTOR_',
  'SERVER_OPERATIONS_',
  'CORS_',
  'ALLOWED_',
  'LEASE_',
  'SHUTDOWN_',
  'LOG_',
  'RUN_',
  'HOUSEKEEPING_',
  'EMBEDDED_PG_',
  'INSTANCE_',
];

/** Variables that are not settings of the service but are read by something of this project. */
const PROJECT_VARIABLES: ReadonlySet<string> = new Set([
  // The example operations in ./operations.
  'MARKING_CODES_SOURCE_URL',
  'DOCUMENTS_KEEP_DAYS',
  'DOCUMENTS_MAX_AGE_DAYS',
  // The tests and the chaos harness.
  'TEST_DATABASE_URL',
  'CHAOS_DATABASE_URL',
  'BENCH_DATABASE_URL',
]);

/** Ordinary variables of a machine that happen to lie close to a setting's name. */
const ORDINARY_VARIABLES: ReadonlySet<string> = new Set([
  'HOME',
  'HOSTNAME',
  'HOSTTYPE',
  'PWD',
  'OLDPWD',
  'PATH',
  'TERM',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'TZ',
]);

/** Prefixes of other programs' variables (Node, npm, libpq, OpenSSL, locales, CI systems): never ours. */
const ORDINARY_PREFIXES: readonly string[] = [
  'NODE_',
  'NPM_',
  'PG',
  'SSL_',
  'OPENSSL_',
  'LC_',
  'XDG_',
  'GIT_',
  'GITHUB_',
  'RUNNER_',
  'CI_',
  'DOCKER_',
  'KUBERNETES_',
  'FAKETIME',
];

/**
 * The variables Kubernetes gives a pod for every service of its namespace (`AUTH_SERVICE_HOST`,
 * `AUTH_PORT=tcp://…`, `AUTH_PORT_443_TCP_ADDR`, …): a service named `auth` or `log` must not
 * stop the start. Only the shape of the value is looked at, never shown.
 */
function isServiceLink(name: string, value: string | undefined): boolean {
  if (/_SERVICE_(HOST|PORT)(_[A-Z0-9_]+)?$/.test(name) || /_PORT_\d+_(TCP|UDP|SCTP)(_[A-Z]+)?$/.test(name)) return true;
  return /_PORT$/.test(name) && /^(tcp|udp|sctp):\/\//.test(value ?? '');
}

/**
 * Optimal string alignment distance (Levenshtein with transpositions of neighbours), so that
 * `PROT` is one step from `PORT`. Stops early: answers `limit + 1` once the distance exceeds `limit`.
 */
export function editDistance(a: string, b: string, limit = Infinity): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let prev2: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, prev2[j - 2]! + 1);
      row.push(d);
      best = Math.min(best, d);
    }
    if (best > limit) return limit + 1;
    prev2 = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/** How far a name may be from a setting to be taken for a misspelling of it: 1 for short names (HOST, PORT), else 2. */
const reach = (setting: string) => (setting.length <= 6 ? 1 : 2);

/**
 * One message per variable of `env` that looks like a setting but is not one of `settings`:
 * it has a setting's prefix, or lies within reach of a setting's name (compared in upper case).
 * Values are never shown: they may hold secrets.
 */
export function unknownSettingProblems(env: Readonly<Record<string, string | undefined>>, settings: readonly string[]): string[] {
  const known = new Set(settings);
  const problems: string[] = [];
  for (const name of Object.keys(env).sort()) {
    if (known.has(name) || PROJECT_VARIABLES.has(name) || ORDINARY_VARIABLES.has(name)) continue;
    const upper = name.toUpperCase();
    if (ORDINARY_PREFIXES.some((prefix) => upper.startsWith(prefix)) || isServiceLink(name, env[name])) continue;
    const nearest = nearestSetting(upper, settings);
    const prefixed = SETTING_PREFIXES.some((p) => upper.startsWith(p));
    const close = nearest !== null && (nearest.distance <= reach(nearest.name) || known.has(upper));
    if (!prefixed && !close) continue;
    const prefix = SETTING_PREFIXES.find((p) => upper.startsWith(p));
    const family = prefix ? settings.filter((setting) => setting.startsWith(prefix)) : [];
    const hint =
      nearest && nearest.distance <= Math.max(3, Math.floor(upper.length / 3))
        ? ` (did you mean ${nearest.name}?)`
        : family.length > 0
          ? ` (the settings starting with ${prefix} are ${family.join(', ')})`
          : '';
    problems.push(
      `${name}: not a setting of this service${hint}; it looks like one, so the start stops rather than ignore it. Rename or unset it (.env.example lists every setting).`,
    );
  }
  return problems;
}

/** The setting nearest to `name`, with its distance (ties: the first in the list). */
function nearestSetting(name: string, settings: readonly string[]): { name: string; distance: number } | null {
  let best: { name: string; distance: number } | null = null;
  for (const setting of settings) {
    const distance = editDistance(name, setting, best ? best.distance : Infinity);
    if (!best || distance < best.distance) best = { name: setting, distance };
  }
  return best;
}

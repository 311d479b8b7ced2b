// The web-facing settings of SPEC §8, parsed once at start (config.ts calls these): the Host
// allow-list against DNS rebinding, the CORS origins, the TLS files and the GraphQL limits.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

/** The Host names always allowed: the loopback names a browser on this machine uses. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];

/**
 * Host names (and IP addresses) requests may carry in their `Host` header, lower-case, IPv6 in
 * brackets. An entry starting with a dot (`.example.org`) stands for that domain and every
 * subdomain of it, as in Django's and webpack-dev-server's ALLOWED_HOSTS.
 */
export type AllowedHosts = readonly string[];

/** Origins (`scheme://host[:port]`, as browsers send them) allowed to read answers cross-origin. */
export type CorsOrigins = readonly string[];

/** The GraphQL limits of SPEC §8, each a setting. */
export interface GraphQLLimits {
  depth: number;
  aliases: number;
  directives: number;
  tokens: number;
  cost: number;
}

export const DEFAULT_LIMITS: GraphQLLimits = { depth: 12, aliases: 30, directives: 20, tokens: 5000, cost: 5000 };
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

const HOST_LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** A host as it is compared: lower-case, no trailing dot, an IPv6 address in brackets. */
export function normaliseHost(host: string): string {
  const lower = host.trim().toLowerCase().replace(/\.$/, '');
  return net.isIPv6(lower) ? `[${lower}]` : lower;
}

/** `ALLOWED_HOSTS` → the list; throws with a message naming the bad entry (config.ts adds the setting's name). */
export function parseAllowedHosts(value: string | undefined): AllowedHosts {
  if (value === undefined) return [];
  const hosts: string[] = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const wildcard = entry.startsWith('.');
    const bare = normaliseHost(wildcard ? entry.slice(1) : entry);
    const unbracketed = bare.startsWith('[') && bare.endsWith(']') ? bare.slice(1, -1) : bare;
    const ok = net.isIP(unbracketed) !== 0 ? !wildcard : bare.length <= 253 && bare.split('.').every((label) => HOST_LABEL.test(label));
    if (!ok) {
      throw new Error(
        `${JSON.stringify(entry)} is not a host name, an IP address or a .domain (for a domain and its subdomains); give names without scheme, port or path, comma-separated`,
      );
    }
    hosts.push(wildcard ? `.${bare}` : bare);
  }
  return hosts;
}

/** `CORS_ORIGINS` → the list of origins; throws with a message naming the bad entry. */
export function parseCorsOrigins(value: string | undefined): CorsOrigins {
  if (value === undefined) return [];
  const origins: string[] = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    let url: URL | null = null;
    try {
      url = new URL(entry);
    } catch {
      /* reported below */
    }
    const bare =
      url !== null && (url.pathname === '/' || url.pathname === '') && !url.search && !url.hash && !url.username && !url.password;
    if (!url || !['http:', 'https:'].includes(url.protocol) || !bare || entry.endsWith('/')) {
      throw new Error(
        `${JSON.stringify(entry)} is not an origin: give scheme://host[:port] (e.g. https://dashboard.example.org), with no path or trailing slash, comma-separated`,
      );
    }
    origins.push(url.origin);
  }
  return origins;
}

/**
 * Why the TLS files cannot serve HTTPS, or null: both or neither, each readable, and the pair a
 * certificate with its private key (checked by building the TLS context the server will use).
 */
export function tlsProblem(certFile: string | undefined, keyFile: string | undefined): string | null {
  if (certFile === undefined && keyFile === undefined) return null;
  if (certFile === undefined || keyFile === undefined) {
    return `TLS_CERT_FILE and TLS_KEY_FILE go together: ${certFile === undefined ? 'TLS_KEY_FILE' : 'TLS_CERT_FILE'} is set, ${certFile === undefined ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'} is not`;
  }
  const read = (name: string, file: string): Buffer | string => {
    const absolute = path.resolve(file);
    try {
      return fs.readFileSync(absolute);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT'
          ? 'no such file'
          : code === 'EACCES'
            ? 'not readable by this user'
            : code === 'EISDIR'
              ? 'a directory'
              : (code ?? 'unreadable');
      return `${name}: cannot read ${absolute} (${why})`;
    }
  };
  const cert = read('TLS_CERT_FILE', certFile);
  const key = read('TLS_KEY_FILE', keyFile);
  if (typeof cert === 'string') return cert;
  if (typeof key === 'string') return key;
  try {
    tls.createSecureContext({ cert, key });
    return null;
  } catch (error) {
    // OpenSSL's reason (no start line, key values mismatch…), never the files' contents.
    const reason = (error as Error).message.replace(/\s+/g, ' ').slice(0, 200);
    return `TLS_CERT_FILE / TLS_KEY_FILE: ${path.resolve(certFile)} and ${path.resolve(keyFile)} are not a PEM certificate and its private key (${reason})`;
  }
}

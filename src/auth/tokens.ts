import { createHash, timingSafeEqual } from 'node:crypto';

// API tokens and roles (SPEC §8). A token is kept only as its SHA-256 in memory; a presented
// token is hashed and compared with every configured hash in constant time. Messages about a
// configured token say where it is (its entry or line), never what it is.

export const ROLES = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Who is asking: a token's name and role, or `local` (an admin) when auth is off. */
export interface Principal {
  readonly name: string;
  readonly role: Role;
}

/** The principal of every request while no token is configured. */
export const LOCAL_PRINCIPAL: Principal = Object.freeze({ name: 'local', role: 'admin' as const });

/** Whether `principal` has at least `role`. */
export const hasRole = (principal: Principal, role: Role): boolean => ROLES.indexOf(principal.role) >= ROLES.indexOf(role);

/** One configured token: its name, role and SHA-256. */
export interface TokenEntry {
  readonly principal: Principal;
  readonly hash: Buffer;
  /** Whether its line gave the hash (`sha256:`) rather than the token. */
  readonly hashed?: boolean;
}

const NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
/** A token travels in an HTTP header: printable ASCII, no spaces. */
const TOKEN = /^[\x21-\x7e]+$/;
export const MIN_TOKEN_LENGTH = 16;
const HASHED = /^sha256:([0-9a-fA-F]{64})$/;
const FORMAT = 'expected name:role:token or name:role:sha256:<64 hex digits of the token’s SHA-256>';

export const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** A line or entry to parse, and how a message names it (`line 3`, `entry 2`). */
export interface TokenLine {
  text: string;
  where: string;
}

/**
 * Parses `name:role:token` and `name:role:sha256:<hex>` lines. Every problem is listed, each
 * naming its line; no message quotes a token, nor anything of a line that does not parse
 * (its first field may be a token pasted alone).
 */
export function parseTokenLines(setting: string, lines: readonly TokenLine[]): { entries: TokenEntry[]; problems: string[] } {
  const entries: TokenEntry[] = [];
  const problems: string[] = [];
  const names = new Map<string, string>();
  const hashes = new Map<string, string>();
  for (const { text, where } of lines) {
    const first = text.indexOf(':');
    const second = first < 0 ? -1 : text.indexOf(':', first + 1);
    if (second < 0) {
      problems.push(`${setting}: ${where}: ${FORMAT}`);
      continue;
    }
    const name = text.slice(0, first).trim();
    const role = text
      .slice(first + 1, second)
      .trim()
      .toLowerCase();
    const token = text.slice(second + 1).trim();
    const lineProblems: string[] = [];
    if (!NAME.test(name)) lineProblems.push('the name must be 1 to 64 letters, digits, _ . @ or -');
    if (!(ROLES as readonly string[]).includes(role)) lineProblems.push('the role must be viewer, operator or admin');
    let hash: Buffer | null = null;
    if (token.toLowerCase().startsWith('sha256:')) {
      const hex = HASHED.exec(token)?.[1];
      if (hex) hash = Buffer.from(hex, 'hex');
      else lineProblems.push('a hashed token is sha256: followed by the 64 hex digits of the token’s SHA-256');
    } else if (token.length < MIN_TOKEN_LENGTH || !TOKEN.test(token)) {
      lineProblems.push(
        `the token must be at least ${MIN_TOKEN_LENGTH} printable ASCII characters without spaces (e.g. the output of \`openssl rand -hex 32\`)`,
      );
    } else {
      hash = sha256(token);
    }
    if (lineProblems.length > 0 || !hash) {
      problems.push(`${setting}: ${where}: ${lineProblems.join('; ')}`);
      continue;
    }
    const sameName = names.get(name);
    if (sameName)
      problems.push(`${setting}: ${where}: the name "${name}" is given twice (also ${sameName}); each token needs a name of its own`);
    const key = hash.toString('hex');
    const sameToken = hashes.get(key);
    if (sameToken) problems.push(`${setting}: ${where}: the same token as ${sameToken}; give each name a token of its own`);
    if (sameName || sameToken) continue;
    names.set(name, where);
    hashes.set(key, where);
    entries.push({ principal: Object.freeze({ name, role: role as Role }), hash, hashed: token.toLowerCase().startsWith('sha256:') });
  }
  return { entries, problems };
}

/** The entries of `AUTH_TOKENS` (comma-separated; empty entries are skipped). */
export function tokenLinesOfSetting(value: string): TokenLine[] {
  return value
    .split(',')
    .map((text, i) => ({ text: text.trim(), where: `entry ${i + 1}` }))
    .filter((line) => line.text !== '');
}

/** The lines of an `AUTH_TOKENS_FILE` (blank lines and `#` comments are skipped). */
export function tokenLinesOfFile(text: string): TokenLine[] {
  return text
    .split(/\r?\n/)
    .map((line, i) => ({ text: line.trim(), where: `line ${i + 1}` }))
    .filter((line) => line.text !== '' && !line.text.startsWith('#'));
}

/**
 * The tokens in force. `enabled` is fixed at start: with auth on, a reload that leaves no valid
 * token leaves every request refused, never the API open. Principals are compared by identity:
 * a reload keeps the object of a line it did not change, so `isCurrent` tells whether a
 * subscription's token (with its name and role) is still configured.
 */
export class TokenStore {
  #entries: readonly TokenEntry[];
  #current = new Set<Principal>();
  #listeners = new Set<() => void>();

  constructor(
    readonly enabled: boolean,
    entries: readonly TokenEntry[] = [],
  ) {
    this.#entries = entries;
    this.#current = new Set(entries.map((e) => e.principal));
  }

  /** Auth off: every request is `local`, an admin. */
  static off(): TokenStore {
    return new TokenStore(false);
  }

  get size(): number {
    return this.#entries.length;
  }

  get names(): string[] {
    return this.#entries.map((e) => e.principal.name);
  }

  /**
   * The principal of an `Authorization` header value (`Bearer <token>`), or null when it has
   * none or an unknown token. With auth off, always `local`.
   */
  authenticate(authorization: string | null | undefined): Principal | null {
    if (!this.enabled) return LOCAL_PRINCIPAL;
    const token = bearerToken(authorization);
    if (token === null) return null;
    const presented = sha256(token);
    let found: Principal | null = null;
    // Every entry is compared, whatever matched: the time taken does not depend on which one did.
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.hash) && found === null) found = entry.principal;
    }
    return found;
  }

  /** Whether the token `principal` came from is still configured, with the same name and role. */
  isCurrent(principal: Principal): boolean {
    return !this.enabled || principal === LOCAL_PRINCIPAL || this.#current.has(principal);
  }

  /** Replaces the tokens (a reload of AUTH_TOKENS_FILE) and tells the listeners. */
  replace(entries: readonly TokenEntry[]): void {
    const kept = new Map(this.#entries.map((e) => [keyOf(e), e.principal]));
    this.#entries = entries.map((e) => {
      const same = kept.get(keyOf(e));
      return same ? { ...e, principal: same } : e;
    });
    this.#current = new Set(this.#entries.map((e) => e.principal));
    for (const listener of [...this.#listeners]) listener();
  }

  /** Calls `listener` after every reload; returns the function that stops it. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

const keyOf = (entry: TokenEntry) => `${entry.principal.name}\n${entry.principal.role}\n${entry.hash.toString('hex')}`;

/** The token of `Bearer <token>` (the scheme in any case), or null. */
export function bearerToken(authorization: string | null | undefined): string | null {
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return match ? match[1]! : null;
}

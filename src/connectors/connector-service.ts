import { LOCAL_PRINCIPAL } from '../auth/tokens.ts';
import type { Clock } from '../clock.ts';
import type { Queryable, Sql } from '../db/client.ts';
import { deleteConnectorRow, insertConnector, jobsUsingConnector, lockConnector, saveConnector } from '../db/connectors.ts';
import { insertLogEntries } from '../db/log.ts';
import type { AuthScheme, ConnectorRow } from '../db/rows.ts';
import { badInput, conflict, notFound } from '../errors.ts';
import type { EventBus } from '../events/bus.ts';
import { nfc, validateTimeout } from '../input.ts';
import { headerValueProblem, validateBaseUrl } from './http.ts';
import type { DatabaseConnectorRegistry } from './registry.ts';
import { isSealed, SecretBox } from './secret-box.ts';
import { CLOSED_CIRCUIT, circuitOf } from './circuit.ts';
import { circuitEntry } from './connector-gate.ts';

export interface HeaderInput {
  name: string;
  value: string;
}

export interface CreateConnectorInput {
  id: string;
  kind?: string | null;
  baseUrl: string;
  headers?: HeaderInput[] | null;
  authScheme?: AuthScheme | null;
  secret?: string | null;
  timeoutSeconds?: number | null;
  breakerFailures?: number | null;
  breakerProbeSeconds?: number | null;
  maxConcurrent?: number | null;
}

export interface UpdateConnectorInput {
  baseUrl?: string | null;
  headers?: HeaderInput[] | null;
  authScheme?: AuthScheme | null;
  secret?: string | null;
  timeoutSeconds?: number | null;
  /** null turns the breaker off. */
  breakerFailures?: number | null;
  /** null keeps the interval. */
  breakerProbeSeconds?: number | null;
  /** null lifts the limit. */
  maxConcurrent?: number | null;
}

/** The probe interval of a breaker when none is given (SPEC §3b). */
export const DEFAULT_PROBE_SECONDS = 30;

/** A whole number from `min` to `max`, or a BAD_USER_INPUT naming `field`. */
function wholeNumber(field: string, value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw badInput(field, `${field} must be a whole number from ${min} to ${max}${what}.`);
  return value;
}

const checkedBreakerFailures = (value: number) => wholeNumber('breakerFailures', value, 1, 1000, ' (null turns the breaker off)');
const checkedProbeSeconds = (value: number) => wholeNumber('breakerProbeSeconds', value, 1, 86_400, ' seconds');
const checkedMaxConcurrent = (value: number) => wholeNumber('maxConcurrent', value, 1, 1000, ' (null: unlimited)');

const CONNECTOR_ID = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$/;
/** Headers the connector sets itself; configuring them would be ignored or would leak auth. */
const RESERVED_HEADERS = new Set([
  'authorization',
  'x-job-id',
  'x-run-id',
  'x-scheduled-at',
  'content-length',
  'host',
  'transfer-encoding',
  'connection',
]);

function validateHeaders(headers: HeaderInput[]): HeaderInput[] {
  if (headers.length > 50) throw badInput('headers', 'At most 50 headers.');
  return headers.map(({ name, value }) => {
    if (!HEADER_NAME.test(name)) throw badInput('headers', `Header name "${name}" is not a valid HTTP header name.`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw badInput('headers', `Header ${name} is set by the connector itself.`);
    if (value.length > 4096) throw badInput('headers', `Header ${name} has a value longer than 4096 characters.`);
    // Refused here, when the connector is saved, rather than failing every run later.
    const problem = headerValueProblem(value);
    if (problem) throw badInput('headers', `The value of header ${name} ${problem}.`);
    return { name, value };
  });
}

function validateAuth(scheme: ConnectorRow['authScheme'], secret: string | null): void {
  if (scheme && !secret) throw badInput('secret', `authScheme ${scheme} needs a secret.`);
  if (!scheme && secret) throw badInput('secret', 'A secret needs an authScheme (BEARER or BASIC).');
  if (secret && secret.length > 4096) throw badInput('secret', 'The secret is too long.');
  if (scheme === 'BASIC' && secret && !secret.includes(':')) throw badInput('secret', 'A BASIC secret is user:password.');
  if (secret && isSealed(secret)) throw badInput('secret', 'A secret cannot start with "enc:v1:", the form of a stored encrypted secret.');
}

function checkedBaseUrl(text: string): string {
  try {
    return validateBaseUrl(nfc(text));
  } catch (error) {
    throw badInput('baseUrl', (error as Error).message);
  }
}

/**
 * Creates, changes and deletes the connectors configured through the API. Each change writes
 * an INFO audit entry (never the secret, nor header values), reloads this instance's registry
 * and tells the other instances to reload theirs.
 */
export class ConnectorService {
  /** Seals the secrets written (`SECRETS_KEY`); without a key they are stored as given. */
  readonly #secrets: SecretBox;

  constructor(private readonly deps: { sql: Sql; clock: Clock; bus: EventBus; registry: DatabaseConnectorRegistry; secrets?: SecretBox }) {
    this.#secrets = deps.secrets ?? new SecretBox({ key: null });
  }

  async create(input: CreateConnectorInput, actor: string = LOCAL_PRINCIPAL.name): Promise<ConnectorRow> {
    const id = nfc(input.id);
    if (!CONNECTOR_ID.test(id))
      throw badInput('id', 'A connector id starts with a letter or _ and has only letters, digits, _ . - (at most 128).');
    if ((input.kind ?? 'HTTP') !== 'HTTP') throw badInput('kind', 'Only HTTP connectors can be created.');
    if (this.deps.registry.isBuiltIn(id)) throw conflict(`${id} is a built-in connector.`);
    const row = {
      id,
      kind: 'HTTP' as const,
      baseUrl: checkedBaseUrl(input.baseUrl),
      headers: validateHeaders(input.headers ?? []),
      authScheme: input.authScheme ?? null,
      secret: input.secret ?? null,
      timeoutSeconds: input.timeoutSeconds == null ? null : validateTimeout(input.timeoutSeconds),
      breakerFailures: input.breakerFailures == null ? null : checkedBreakerFailures(input.breakerFailures),
      breakerProbeSeconds: input.breakerProbeSeconds == null ? DEFAULT_PROBE_SECONDS : checkedProbeSeconds(input.breakerProbeSeconds),
      maxConcurrent: input.maxConcurrent == null ? null : checkedMaxConcurrent(input.maxConcurrent),
    };
    validateAuth(row.authScheme, row.secret);
    return this.#write(id, 'created', actor, async (tx, now) => {
      const saved = await insertConnector(tx, { ...row, secret: row.secret === null ? null : this.#secrets.seal(row.secret, id) }, now);
      if (!saved) throw conflict(`A connector with id "${id}" already exists.`);
      return saved;
    });
  }

  update(rawId: string, input: UpdateConnectorInput, actor: string = LOCAL_PRINCIPAL.name): Promise<ConnectorRow> {
    const id = nfc(rawId);
    const baseUrl = input.baseUrl == null ? undefined : checkedBaseUrl(input.baseUrl);
    const headers = input.headers == null ? undefined : validateHeaders(input.headers);
    const timeoutSeconds = input.timeoutSeconds == null ? input.timeoutSeconds : validateTimeout(input.timeoutSeconds);
    const breakerFailures = input.breakerFailures == null ? input.breakerFailures : checkedBreakerFailures(input.breakerFailures);
    const breakerProbeSeconds = input.breakerProbeSeconds == null ? undefined : checkedProbeSeconds(input.breakerProbeSeconds);
    const maxConcurrent = input.maxConcurrent == null ? input.maxConcurrent : checkedMaxConcurrent(input.maxConcurrent);
    return this.#write(id, 'updated', actor, async (tx, now) => {
      const current = await lockConnector(tx, id);
      if (!current) throw notFound(`No configured connector with id "${id}".`);
      // Clearing the scheme clears the secret with it.
      const authScheme = input.authScheme === undefined ? current.authScheme : input.authScheme;
      const secret =
        input.secret === undefined && authScheme && current.secret
          ? this.#kept(current, current.secret, authScheme)
          : this.#given(id, authScheme, input.secret);
      const breaker = breakerFailures === undefined ? current.breakerFailures : breakerFailures;
      // A breaker turned off forgets its circuit: turned on again, it starts CLOSED.
      const circuit = breaker === null ? CLOSED_CIRCUIT : circuitOf(current);
      const saved = await saveConnector(tx, {
        ...current,
        baseUrl: baseUrl ?? current.baseUrl,
        headers: headers ?? current.headers,
        authScheme,
        secret,
        timeoutSeconds: timeoutSeconds === undefined ? current.timeoutSeconds : timeoutSeconds,
        breakerFailures: breaker,
        breakerProbeSeconds: breakerProbeSeconds ?? current.breakerProbeSeconds,
        maxConcurrent: maxConcurrent === undefined ? current.maxConcurrent : maxConcurrent,
        circuitState: circuit.state,
        circuitFailures: circuit.failures,
        circuitOpenedAt: circuit.openedAt,
        circuitNextProbeAt: circuit.nextProbeAt,
        circuitProbeRunId: circuit.probeRunId,
        updatedAt: now,
      });
      // An open circuit closes with its breaker, and says so as any closing does.
      return { row: saved, circuitClosed: current.circuitState !== 'CLOSED' && breaker === null };
    });
  }

  async delete(rawId: string, force: boolean, actor: string = LOCAL_PRINCIPAL.name): Promise<string> {
    const id = nfc(rawId);
    if (this.deps.registry.isBuiltIn(id)) throw conflict(`${id} is a built-in connector and cannot be deleted.`);
    await this.#write(id, 'deleted', actor, async (tx) => {
      const current = await lockConnector(tx, id);
      if (!current) throw notFound(`No configured connector with id "${id}".`);
      const users = await jobsUsingConnector(tx, id);
      if (users.length > 0 && !force) {
        throw conflict(`Connector ${id} is used by jobs ${users.join(', ')}; pass force: true to delete it anyway.`);
      }
      await deleteConnectorRow(tx, id);
      return current;
    });
    return id;
  }

  /** The stored form of a secret given (or left out) in an input, checked against the scheme. */
  #given(id: string, authScheme: AuthScheme | null, secret: string | null | undefined): string | null {
    const plain = secret ?? null;
    validateAuth(authScheme, plain);
    return plain === null ? null : this.#secrets.seal(plain, id);
  }

  /** The stored secret kept by an update, checked against a changed scheme when it can be read. */
  #kept(current: ConnectorRow, stored: string, authScheme: AuthScheme): string {
    if (authScheme === current.authScheme) return stored;
    let plain: string;
    try {
      plain = this.#secrets.open(stored, current.id);
    } catch (error) {
      throw badInput(
        'secret',
        `The stored secret cannot be decrypted (${(error as Error).message}); give the secret with the new authScheme.`,
      );
    }
    validateAuth(authScheme, plain);
    return stored;
  }

  async #write(
    id: string,
    what: 'created' | 'updated' | 'deleted',
    // Who asked: a token's name, `local` with auth off (SPEC §8: every audit entry names it).
    actor: string,
    change: (tx: Queryable, now: Date) => Promise<ConnectorRow | { row: ConnectorRow; circuitClosed: boolean }>,
  ): Promise<ConnectorRow> {
    const now = new Date(this.deps.clock.now());
    const { row, entries, circuitClosed } = await this.deps.sql.begin(async (tx) => {
      const changed = await change(tx, now);
      const { row: saved, circuitClosed } = 'row' in changed ? changed : { row: changed, circuitClosed: false };
      const details = {
        baseUrl: saved.baseUrl,
        headers: saved.headers.map((h) => h.name),
        authScheme: saved.authScheme,
        hasSecret: saved.secret !== null,
        timeoutSeconds: saved.timeoutSeconds,
        breakerFailures: saved.breakerFailures,
        breakerProbeSeconds: saved.breakerProbeSeconds,
        maxConcurrent: saved.maxConcurrent,
        actor,
      };
      const logged = await insertLogEntries(tx, [
        { at: now, level: 'INFO', message: `Connector ${id} ${what}`, details },
        ...(circuitClosed ? [circuitEntry(id, 'closed', null, null, now)] : []),
      ]);
      return { row: saved, entries: logged, circuitClosed };
    });
    this.deps.bus.publish('connector:changed', { at: now, connectorId: id });
    if (circuitClosed) this.deps.bus.publish('circuit:closed', { at: now, connectorId: id, circuit: null });
    for (const entry of entries) this.deps.bus.publish('log:added', { entry });
    // The registry reloads on that event; waiting for it lets this caller's next job use the
    // connector. A reload that fails is logged there: it never fails a change already committed.
    await this.deps.registry.settled();
    return row;
  }
}

import fs from 'node:fs';
import type { Logger } from 'pino';
import { OperationPool } from './operation-pool.ts';
import type { CallContext, Connector, Operation } from './types.ts';

export const SERVER_OPERATIONS_CONNECTOR = 'ServerOperationConnector';

export interface ServerOperationsOptions {
  /** SERVER_OPERATIONS_DIR, resolved. */
  dir: string;
  /** Operations that ship with the service; they run on the main thread (they only await the database). */
  builtins: Record<string, Operation>;
  /** The database the workers' own `ctx.sql` pools connect to. */
  databaseUrl: string;
  instance: string;
  /** SERVER_OPERATIONS_WORKERS. */
  workers: number;
  log: Logger;
}

/**
 * Calls server operations: the built-in ones, and those default-exported by the ES modules
 * (`.js`/`.mjs`) of a directory, which run on a pool of worker threads (operation-pool.ts) so
 * that one which blocks its thread cannot stall the scheduler. Files are re-read when they
 * change: a new pool loads them, and the old one stops once its calls in flight have ended, so
 * the old modules are freed. A file that fails to load is logged and skipped.
 */
export class ServerOperationsConnector implements Connector {
  readonly id = SERVER_OPERATIONS_CONNECTOR;
  readonly kind = 'SERVER_OPERATIONS' as const;
  readonly builtIn = true;
  readonly #options: ServerOperationsOptions;
  #pool: OperationPool | null = null;
  /** The operations the pool's modules export (they take precedence over built-ins of the same name). */
  #loaded = new Set<string>();
  #watcher: fs.FSWatcher | null = null;
  #reloadTimer: NodeJS.Timeout | null = null;
  #loading: Promise<void> = Promise.resolve();
  #stopped = false;

  constructor(options: ServerOperationsOptions) {
    this.#options = options;
  }

  /** Loads the directory and starts watching it. */
  async start(): Promise<void> {
    const { dir, log } = this.#options;
    await this.reload();
    try {
      this.#watcher = fs.watch(dir, () => this.#scheduleReload());
      this.#watcher.on('error', (error) => log.warn({ err: error, dir }, 'watching server operations failed'));
    } catch (error) {
      log.warn({ err: error, dir }, 'server operations directory cannot be watched; changes need a restart');
    }
  }

  /** Stops watching and stops the workers (calls still in flight fail). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    await this.#loading.catch(() => {});
    await this.#pool?.close();
    this.#pool = null;
  }

  /** Re-reads every module on fresh workers; resolves when the new set is in place. */
  reload(): Promise<void> {
    this.#loading = this.#loading.then(() => this.#load());
    return this.#loading;
  }

  hasMethod(method: string): boolean {
    const name = method.normalize('NFC');
    return this.#loaded.has(name) || Object.hasOwn(this.#options.builtins, name);
  }

  methods(): string[] {
    return [...new Set([...this.#loaded, ...Object.keys(this.#options.builtins)])].sort();
  }

  async call(method: string, ctx: CallContext): Promise<unknown> {
    const name = method.normalize('NFC');
    if (this.#loaded.has(name) && this.#pool) return this.#pool.call(name, ctx);
    const builtin = Object.hasOwn(this.#options.builtins, name) ? this.#options.builtins[name] : undefined;
    if (builtin) return builtin(ctx);
    throw new Error(
      `Server operation "${name}" does not exist (known: ${this.methods().join(', ') || 'none'}); add it to a module in ${this.#options.dir}.`,
    );
  }

  #scheduleReload(): void {
    // Editors write files in several steps; one reload after they settle.
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    this.#reloadTimer = setTimeout(() => void this.reload(), 100);
    this.#reloadTimer.unref();
  }

  async #load(): Promise<void> {
    if (this.#stopped) return;
    const { dir, databaseUrl, instance, workers, log } = this.#options;
    const pool = new OperationPool({ dir, databaseUrl, instance, workers, log });
    let listed;
    try {
      listed = await pool.list();
    } catch (error) {
      log.error({ err: error, dir }, 'server operations could not be loaded; the previous set stays in use');
      await pool.close();
      return;
    }
    for (const { file, error } of listed.problems) {
      log.error({ file, error }, 'server operations module failed to load; its operations are unavailable');
    }
    const previous = this.#pool;
    this.#pool = pool;
    this.#loaded = new Set(listed.names);
    log.debug({ dir, operations: listed.names.length }, 'server operations loaded');
    // The old workers finish what they run, then go, and their modules with them.
    previous?.drain().catch((error: unknown) => log.error({ err: error }, 'stopping the previous server operations workers failed'));
  }
}

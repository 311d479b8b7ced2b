import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { Operation } from '../operations/builtin.ts';
import type { CallContext, Connector } from './types.ts';

export const SERVER_OPERATIONS_CONNECTOR = 'ServerOperationConnector';

/**
 * Calls server operations: built-in ones plus those default-exported by the ES modules
 * (`.js`/`.mjs`) in a directory. Files are re-read when they change; a file that fails to load
 * is logged and skipped, and the others stay available.
 */
export class ServerOperationsConnector implements Connector {
  readonly id = SERVER_OPERATIONS_CONNECTOR;
  readonly kind = 'SERVER_OPERATIONS' as const;
  readonly builtIn = true;
  #operations = new Map<string, Operation>();
  #watcher: fs.FSWatcher | null = null;
  #reloadTimer: NodeJS.Timeout | null = null;
  #loading: Promise<void> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly builtins: Record<string, Operation>,
    private readonly log: Logger,
  ) {}

  /** Loads the directory and starts watching it. */
  async start(): Promise<void> {
    await this.reload();
    try {
      this.#watcher = fs.watch(this.dir, () => this.#scheduleReload());
      this.#watcher.on('error', (error) => this.log.warn({ err: error, dir: this.dir }, 'watching server operations failed'));
    } catch (error) {
      this.log.warn({ err: error, dir: this.dir }, 'server operations directory cannot be watched; changes need a restart');
    }
  }

  stop(): void {
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
  }

  /** Re-reads every module; resolves when the new set is in place. */
  reload(): Promise<void> {
    this.#loading = this.#loading.then(() => this.#load());
    return this.#loading;
  }

  hasMethod(method: string): boolean {
    return this.#operations.has(method.normalize('NFC'));
  }

  methods(): string[] {
    return [...this.#operations.keys()].sort();
  }

  async call(method: string, ctx: CallContext): Promise<unknown> {
    const name = method.normalize('NFC');
    const operation = this.#operations.get(name);
    if (!operation) {
      throw new Error(
        `Server operation "${name}" does not exist (known: ${this.methods().join(', ') || 'none'}); add it to a module in ${this.dir}.`,
      );
    }
    return operation(ctx);
  }

  #scheduleReload(): void {
    // Editors write files in several steps; one reload after they settle.
    if (this.#reloadTimer) clearTimeout(this.#reloadTimer);
    this.#reloadTimer = setTimeout(() => void this.reload(), 100);
    this.#reloadTimer.unref();
  }

  async #load(): Promise<void> {
    const operations = new Map<string, Operation>(Object.entries(this.builtins));
    let files: string[] = [];
    try {
      files = (await fs.promises.readdir(this.dir)).filter((f) => /\.m?js$/.test(f)).sort();
    } catch (error) {
      this.log.warn({ err: error, dir: this.dir }, 'server operations directory cannot be read');
    }
    for (const file of files) {
      const full = path.resolve(this.dir, file);
      try {
        const { mtimeMs } = await fs.promises.stat(full);
        // The query string makes Node import the changed file anew instead of its cached copy.
        const module = (await import(`${pathToFileURL(full).href}?v=${mtimeMs}`)) as { default?: unknown };
        const exported = module.default;
        if (!exported || typeof exported !== 'object') throw new Error('default export is not an object of operations');
        for (const [name, fn] of Object.entries(exported)) {
          if (typeof fn !== 'function') continue;
          operations.set(name.normalize('NFC'), fn as Operation);
        }
      } catch (error) {
        this.log.error({ err: error, file: full }, 'server operations module failed to load; its operations are unavailable');
      }
    }
    this.#operations = operations;
    this.log.debug({ dir: this.dir, operations: operations.size }, 'server operations loaded');
  }
}

/**
 * Group commit: writes submitted while a write is in flight (or in the same turn of the event
 * loop) go to the database together, in one statement or transaction, instead of one round trip
 * and one commit each. A lone write goes out at once (after the current turn), so batching adds
 * no wait when the load is light; under load a batch holds what arrived during the last write.
 * Each submission settles with its own answer, or with the error of the batch it was in.
 */
export class GroupCommit<T, R> {
  readonly #write: (items: T[]) => Promise<R[]>;
  readonly #max: number;
  #queue: { item: T; resolve(value: R): void; reject(error: unknown): void }[] = [];
  #scheduled = false;

  /** `write` answers one result per item, in order. */
  constructor(write: (items: T[]) => Promise<R[]>, options: { max?: number } = {}) {
    this.#write = write;
    this.#max = options.max ?? 1000;
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(() => void this.#drain());
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#max);
      try {
        const results = await this.#write(batch.map((b) => b.item));
        batch.forEach((b, i) => b.resolve(results[i]!));
      } catch (error) {
        for (const b of batch) b.reject(error);
      }
    }
    this.#scheduled = false;
  }
}

import type { Client } from 'graphql-ws';
import type { Json } from './api.ts';

/** What one live subscription delivered so far, and a way to await more of it. */
export interface Collected<T> {
  items: T[];
  errors: unknown[];
  completed: boolean;
  /** Resolves once `condition(items)` holds; rejects on an error or after `timeoutMs`. */
  until(condition: number | ((items: T[]) => boolean), what?: string, timeoutMs?: number): Promise<T[]>;
  dispose(): void;
}

/**
 * Collects the `next` payloads of a subscription into an array, in arrival order. Waiting is
 * event-driven: each arrival re-checks the pending waits.
 */
export function collector<T>(): Collected<T> & {
  push(item: T): void;
  fail(error: unknown): void;
  complete(): void;
  onDispose(fn: () => void): void;
} {
  const items: T[] = [];
  const errors: unknown[] = [];
  const waits = new Set<() => void>();
  let disposeFn: () => void = () => {};
  const check = () => {
    for (const wait of [...waits]) wait();
  };
  const self = {
    items,
    errors,
    completed: false,
    push(item: T) {
      items.push(item);
      check();
    },
    fail(error: unknown) {
      errors.push(error);
      check();
    },
    complete() {
      self.completed = true;
      check();
    },
    onDispose(fn: () => void) {
      disposeFn = fn;
    },
    dispose() {
      disposeFn();
    },
    until(condition: number | ((items: T[]) => boolean), what?: string, timeoutMs = 5000): Promise<T[]> {
      const test = typeof condition === 'number' ? (xs: T[]) => xs.length >= condition : condition;
      const label = what ?? (typeof condition === 'number' ? `${condition} events` : 'the expected events');
      return new Promise<T[]>((resolve, reject) => {
        const timer = setTimeout(() => {
          waits.delete(wait);
          reject(new Error(`timed out waiting for ${label}; received ${JSON.stringify(items, null, 1)}`));
        }, timeoutMs);
        const wait = () => {
          if (errors.length > 0) {
            waits.delete(wait);
            clearTimeout(timer);
            reject(new Error(`subscription failed: ${JSON.stringify(errors)}`));
          } else if (test(items)) {
            waits.delete(wait);
            clearTimeout(timer);
            resolve(items);
          } else if (self.completed) {
            waits.delete(wait);
            clearTimeout(timer);
            reject(new Error(`subscription completed before ${label}; received ${JSON.stringify(items)}`));
          }
        };
        waits.add(wait);
        wait();
      });
    },
  };
  return self;
}

/** Subscribes through a graphql-ws client; `data` payloads are collected, GraphQL errors fail it. */
export function subscribeWs<T = Json>(client: Client, query: string, variables?: Record<string, unknown>): Collected<T> {
  const c = collector<T>();
  const dispose = client.subscribe<T>(
    { query, variables },
    {
      next: (result) => (result.errors ? c.fail(result.errors) : c.push(result.data as T)),
      error: (error) => c.fail(error),
      complete: () => c.complete(),
    },
  );
  c.onDispose(dispose);
  return c;
}

export interface SseFrame {
  event: string;
  data: string;
}

/** Reads a `text/event-stream` body frame by frame (comments and keep-alives are skipped). */
export async function* sseFrames(body: ReadableStream<Uint8Array>): AsyncGenerator<SseFrame> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += decoder.decode(value, { stream: true });
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const block = text.slice(0, end);
        text = text.slice(end + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
        if (data.length > 0 || event !== 'message') yield { event, data: data.join('\n') };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

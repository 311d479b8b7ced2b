import { GraphQLError } from 'graphql';
import type { Topic, TopicEvent, Topics } from './topics.ts';

export type Listener = (event: TopicEvent) => void;

/** What happens to a subscriber whose buffer fills: it is ended with this error, others go on. */
export class SubscriberOverflowError extends GraphQLError {
  constructor(limit: number) {
    // A GraphQLError, so the client reads why (it is not masked as an unexpected error).
    super(`Subscriber fell ${limit} events behind and was disconnected; reconnect and catch up from the runs and logEntries queries.`, {
      extensions: { code: 'SUBSCRIBER_TOO_SLOW' },
    });
    this.name = 'SubscriberOverflowError';
  }
}

/**
 * The one event bus. Publishing is synchronous and never waits for a subscriber: each
 * subscription has a bounded buffer of its own, so a slow subscriber never slows the
 * scheduler or other subscribers. Events reach each subscriber in publish order.
 *
 * Events published here also go to `onPublish` senders (the LISTEN/NOTIFY relay); events
 * from other instances come in through `deliver`, so they are never sent back out.
 */
export class EventBus {
  #listeners = new Set<Listener>();
  #outbound = new Set<Listener>();
  #subscriptions = 0;

  /** Publishes an event that happened here: local subscribers get it, and so do other instances. */
  publish<T extends Topic>(topic: T, payload: Topics[T]): void {
    const event = { topic, payload } as TopicEvent;
    this.deliver(event);
    for (const send of this.#outbound) send(event);
  }

  /** Registers what carries this instance's events to the others (the LISTEN/NOTIFY relay). */
  onPublish(send: Listener): () => void {
    this.#outbound.add(send);
    return () => this.#outbound.delete(send);
  }

  /** Hands an event to local subscribers only: used for events that came from another instance. */
  deliver(event: TopicEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own; delivery to the others goes on.
      }
    }
  }

  /** A synchronous listener; returns the function that removes it. */
  on(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get subscriberCount(): number {
    return this.#listeners.size;
  }

  /** Open `subscribe` iterators: the GraphQL subscriptions of this instance. */
  get subscriptionCount(): number {
    return this.#subscriptions;
  }

  /**
   * An async iterator over the events that pass `select` (which may map them), buffered up to
   * `limit`. Ends when the consumer returns, or with SubscriberOverflowError on overflow.
   */
  subscribe<R>(select: (event: TopicEvent) => R | undefined, limit = 1000, signal?: AbortSignal): AsyncIterableIterator<R> {
    const buffer: R[] = [];
    let waiting: ((result: IteratorResult<R>) => void) | null = null;
    let failed: Error | null = null;
    let done = false;

    const finish = () => {
      if (done) return;
      done = true;
      this.#subscriptions--;
      remove();
      signal?.removeEventListener('abort', finish);
      if (waiting) {
        const wake = waiting;
        waiting = null;
        wake({ value: undefined, done: true });
      }
    };
    const remove = this.on((event) => {
      const value = select(event);
      if (value === undefined || done) return;
      if (waiting) {
        const wake = waiting;
        waiting = null;
        wake({ value, done: false });
      } else if (buffer.length >= limit) {
        failed = new SubscriberOverflowError(limit);
        buffer.length = 0;
        remove();
      } else {
        buffer.push(value);
      }
    });
    signal?.addEventListener('abort', finish, { once: true });
    this.#subscriptions++;

    const iterator: AsyncIterableIterator<R> = {
      next: () => {
        if (buffer.length > 0) return Promise.resolve({ value: buffer.shift() as R, done: false });
        if (failed) {
          const error = failed;
          failed = null;
          finish();
          return Promise.reject(error);
        }
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (waiting = resolve));
      },
      return: () => {
        finish();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}

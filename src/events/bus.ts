import { GraphQLError } from 'graphql';
import type { RunRow } from '../db/rows.ts';
import { RunOrder } from './order.ts';
import type { Topic, TopicEvent, Topics } from './topics.ts';

export type Listener = (event: TopicEvent) => void;

/**
 * What ends a subscription when this instance cannot vouch that it saw every event (its LISTEN
 * connection dropped and came back, another instance's events were lost on their way, an event
 * could not be published): SPEC §6, never a silent gap.
 */
export class EventsInterruptedError extends GraphQLError {
  constructor(reason: string) {
    super(
      `Live events were interrupted (${reason}); some may be missing. Catch up from the runs and logEntries queries and subscribe again.`,
      { extensions: { code: 'EVENTS_INTERRUPTED' } },
    );
    this.name = 'EventsInterruptedError';
  }
}

export interface EventBusOptions {
  /**
   * Reads runs' current rows. With it, a run's start that overtook the end of the job's previous
   * run (sent by another instance) is released at once, after that end read back from its row.
   */
  readRuns?: (ids: string[]) => Promise<RunRow[]>;
  /** How long such a start waits for that end before the job's subscriptions are interrupted. */
  orderWaitMs?: number;
  /** Told when a listener throws (the others still get the event); by default the error is rethrown asynchronously. */
  onListenerError?: (error: unknown, event: TopicEvent) => void;
}

/** One open `subscribe` iterator, as the bus sees it. */
interface Subscription {
  /** The one job it follows, or null for all. */
  jobId: string | null;
  push(event: TopicEvent): void;
  interrupt(error: EventsInterruptedError): void;
}

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
 * scheduler or other subscribers. Listeners (`on`) get events in publish order; subscriptions
 * (`subscribe`) get them through RunOrder, which keeps each job's run events in the order they
 * happened across instances.
 *
 * Events published here also go to `onPublish` senders (the LISTEN/NOTIFY relay); events
 * from other instances come in through `deliver`, so they are never sent back out. When events
 * may have been lost, `interrupt` ends the subscriptions with EVENTS_INTERRUPTED, and `lost`
 * also tells the other instances (through `onLoss`).
 */
export class EventBus {
  #listeners = new Set<Listener>();
  #outbound = new Set<Listener>();
  #lossHandlers = new Set<(reason: string) => void>();
  #subscribers = new Set<Subscription>();
  #subscriptions = 0;
  /** Subscriptions served from another one's events (graphql-ws subscribers sharing one execution). */
  #shared = 0;
  #cutoffs = 0;
  #order: RunOrder;
  #onListenerError: (error: unknown, event: TopicEvent) => void;

  constructor(options: EventBusOptions = {}) {
    this.#onListenerError =
      options.onListenerError ??
      ((error) =>
        queueMicrotask(() => {
          throw error;
        }));
    this.#order = new RunOrder({
      emit: (event) => {
        for (const subscriber of this.#subscribers) subscriber.push(event);
      },
      interrupt: (reason, jobId) => this.interrupt(reason, jobId),
      readRuns: options.readRuns,
      // Within a second of knowing (SPEC §6), with room for the interrupt to reach the client.
      waitMs: options.orderWaitMs ?? 500,
    });
  }

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

  /** Registers what tells the other instances that some of this instance's events were lost. */
  onLoss(handler: (reason: string) => void): () => void {
    this.#lossHandlers.add(handler);
    return () => this.#lossHandlers.delete(handler);
  }

  /** Hands an event to local subscribers only: used for events that came from another instance. */
  deliver(event: TopicEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        // A listener's failure is its own: it is reported, and delivery to the others goes on.
        this.#onListenerError(error, event);
      }
    }
    this.#order.accept(event);
  }

  /**
   * Ends the open subscriptions (those that see `jobId`'s events, or all) with
   * EVENTS_INTERRUPTED, after the events they have buffered: some events may not have reached
   * them. Subscriptions made afterwards are not affected.
   */
  interrupt(reason: string, jobId?: string): void {
    this.#cutoffs++;
    const error = new EventsInterruptedError(reason);
    for (const subscriber of [...this.#subscribers]) {
      if (jobId === undefined || subscriber.jobId === null || subscriber.jobId === jobId) subscriber.interrupt(error);
    }
    // Every subscription ended: the per-job order starts afresh (runs that looked open may have ended unseen).
    if (jobId === undefined) this.#order.reset();
  }

  /** Events of this instance may not have been published (an outcome unknown): interrupt, here and elsewhere. */
  lost(reason: string): void {
    this.interrupt(reason);
    for (const handler of this.#lossHandlers) handler(reason);
  }

  /** A synchronous listener; returns the function that removes it. */
  on(listener: Listener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Listeners and subscriptions attached to the bus, shared ones included. */
  get subscriberCount(): number {
    return this.#listeners.size + this.#subscribers.size + this.#shared;
  }

  /** Open `subscribe` iterators and shared subscriptions: the GraphQL subscriptions of this instance. */
  get subscriptionCount(): number {
    return this.#subscriptions + this.#shared;
  }

  /**
   * How many times the bus has ended subscriptions itself so far (interrupted them, or cut off one
   * that fell behind). Whoever serves several subscribers from one subscription
   * (http/shared-subscriptions.ts) joins a newcomer to it only while this has not changed since it
   * subscribed: the error may be on its way to it, and must not reach a subscriber that came after.
   */
  get cutoffs(): number {
    return this.#cutoffs;
  }

  /** Counts (or, negative, uncounts) subscriptions served from another one's events. */
  countShared(delta: number): void {
    this.#shared += delta;
  }

  /**
   * An async iterator over the events that pass `select` (which may map them), buffered up to
   * `limit`. Ends when the consumer returns, with SubscriberOverflowError on overflow (its
   * buffer dropped), or with EventsInterruptedError after its buffer when interrupted.
   * `scope.jobId` says which job it follows (null: all), for interruptions of one job.
   */
  subscribe<R>(
    select: (event: TopicEvent) => R | undefined,
    limit = 1000,
    signal?: AbortSignal,
    scope: { jobId?: string | null } = {},
  ): AsyncIterableIterator<R> {
    const buffer: R[] = [];
    let waiting: { resolve: (result: IteratorResult<R>) => void; reject: (error: Error) => void } | null = null;
    let failed: Error | null = null;
    let done = false;

    const finish = () => {
      if (done) return;
      done = true;
      this.#subscriptions--;
      this.#subscribers.delete(subscriber);
      signal?.removeEventListener('abort', finish);
      if (waiting) {
        const wake = waiting;
        waiting = null;
        wake.resolve({ value: undefined, done: true });
      }
    };
    /** Ends it with `error`, at once for a consumer waiting (its buffer is empty then). */
    const fail = (error: Error) => {
      if (done || failed) return;
      this.#subscribers.delete(subscriber);
      if (waiting) {
        const wake = waiting;
        waiting = null;
        finish();
        wake.reject(error);
      } else {
        failed = error;
      }
    };
    const subscriber: Subscription = {
      jobId: scope.jobId ?? null,
      push: (event) => {
        if (done || failed) return;
        const value = select(event);
        if (value === undefined) return;
        if (waiting) {
          const wake = waiting;
          waiting = null;
          wake.resolve({ value, done: false });
        } else if (buffer.length >= limit) {
          buffer.length = 0;
          this.#cutoffs++;
          fail(new SubscriberOverflowError(limit));
        } else {
          buffer.push(value);
        }
      },
      interrupt: (error) => fail(error),
    };
    this.#subscribers.add(subscriber);
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
        return new Promise((resolve, reject) => (waiting = { resolve, reject }));
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

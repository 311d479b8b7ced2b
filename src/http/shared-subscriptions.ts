// graphql-ws subscribers that asked the same thing share one subscription: each event is executed,
// serialised and encoded once for all of them, then written to each socket (SPEC §9: event
// delivery to many subscribers). What one subscriber costs per event is a copy of a few hundred
// bytes and its share of a write: the messages a socket gets in one turn of the event loop go out
// in one write, so an instance that fell behind catches up at a fraction of the cost.
import type { Writable } from 'node:stream';
import type { ExecutionResult } from 'graphql';
import { WebSocket } from 'ws';
import { type EventBus, SubscriberOverflowError } from '../events/bus.ts';

/** What a subscription's execution answers: a stream of results, or one result (its errors, say). */
export type SubscriptionResult = AsyncIterable<ExecutionResult> | ExecutionResult;

export interface SharedSubscriptionsOptions {
  bus: EventBus;
  /** A socket whose unsent backlog passes this is closed (1013), as graphql-ws's own sends are. */
  maxBacklogBytes: number;
  /** Messages a subscriber may have waiting to be written before it is ended with SUBSCRIBER_TOO_SLOW (the bus's buffer). */
  maxUnwritten?: number;
}

const isAsyncIterable = (value: SubscriptionResult): value is AsyncIterable<ExecutionResult> =>
  typeof (value as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function';

/**
 * The subscriptions of this instance's graphql-ws subscribers, one per distinct request: the same
 * document, operation name and variables, asked with the same principal, give the same results
 * event by event, so they are executed once. The first subscriber's request starts it (through
 * yoga, so every plugin applies as before); the results go to every subscriber in the order they
 * come. A subscriber that leaves leaves alone; the last one ends the subscription.
 *
 * Every subscriber still ends as it would on its own subscription (SPEC §6): with the same error
 * (EVENTS_INTERRUPTED, SUBSCRIBER_TOO_SLOW) after the results before it, or complete. Newcomers
 * join only a subscription the bus has cut nothing off since it subscribed (EventBus.cutoffs):
 * one it did cut off could end them for a gap they never had.
 */
export class SharedSubscriptions {
  readonly #groups = new Map<string, Group>();
  readonly #maxUnwritten: number;

  constructor(private readonly options: SharedSubscriptionsOptions) {
    this.#maxUnwritten = options.maxUnwritten ?? 1000;
  }

  /** Subscriptions executed now (each serving one or more subscribers). */
  get size(): number {
    return this.#groups.size;
  }

  /**
   * Serves the subscription `id` of `socket`: joins the group of `key`, or starts one with
   * `start` (the subscriber's own execution). Answers what graphql-ws iterates: a stream that
   * sends its results to the socket itself and ends as the subscription does, or the one result
   * `start` answered when it did not subscribe.
   */
  async subscribe(
    key: string,
    start: () => Promise<SubscriptionResult> | SubscriptionResult,
    subscriber: { socket: WebSocket; stream: Writable; id: string },
  ): Promise<SubscriptionResult> {
    let group = this.#groups.get(key);
    if (!group || !group.joinable(this.options.bus.cutoffs)) {
      group = new Group(this.options.bus, this.options.bus.cutoffs, () => {
        if (this.#groups.get(key) === group) this.#groups.delete(key);
      });
      this.#groups.set(key, group);
      group.start(start);
    }
    const member = new Member(subscriber, group, this.options.maxBacklogBytes, this.#maxUnwritten);
    group.join(member);
    let result: SubscriptionResult;
    try {
      result = await group.started;
    } catch (error) {
      member.leave();
      throw error;
    }
    if (isAsyncIterable(result)) return member;
    // It did not subscribe (refused, say): each subscriber is answered what its own request would have been.
    member.leave();
    return result;
  }
}

class Group {
  readonly members = new Set<Member>();
  started!: Promise<SubscriptionResult>;
  #source: AsyncIterator<ExecutionResult> | null = null;
  #ended = false;
  /** Members the bus counts besides the source's own subscription. */
  #counted = 0;
  #flushing = false;

  constructor(
    private readonly bus: EventBus,
    private readonly epoch: number,
    private readonly forget: () => void,
  ) {}

  joinable(cutoffs: number): boolean {
    return !this.#ended && cutoffs === this.epoch;
  }

  start(start: () => Promise<SubscriptionResult> | SubscriptionResult): void {
    this.started = (async () => start())();
    this.started.then(
      (result) => {
        if (!isAsyncIterable(result)) return this.#end();
        this.#source = result[Symbol.asyncIterator]();
        this.#count();
        // Everyone left while it started.
        if (this.members.size === 0) return this.#close();
        void this.#pump(this.#source);
      },
      // graphql-ws answers the error to each subscriber as it would have on its own.
      () => this.#end(),
    );
  }

  join(member: Member): void {
    this.members.add(member);
    this.#count();
  }

  leave(member: Member): void {
    if (!this.members.delete(member)) return;
    this.#count();
    if (this.members.size === 0) this.#close();
  }

  async #pump(source: AsyncIterator<ExecutionResult>): Promise<void> {
    let failure: unknown = null;
    try {
      for (;;) {
        const next = await source.next();
        if (next.done) break;
        this.#broadcast(next.value);
      }
    } catch (error) {
      failure = error;
    }
    this.#end();
    for (const member of [...this.members]) member.end(failure);
  }

  /** One result to every member: serialised once, as graphql-ws would (its errors last, through toJSON). */
  #broadcast(result: ExecutionResult): void {
    const { errors, ...rest } = result;
    const payload = JSON.stringify(errors ? { ...rest, errors: errors.map((e) => e.toJSON()) } : rest);
    const tail = Buffer.from(`,"type":"next","payload":${payload}}`);
    for (const member of this.members) member.queue(tail);
    // Written once this turn of the event loop is over, with whatever else came in it.
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => {
      this.#flushing = false;
      for (const member of this.members) member.flush();
    });
  }

  /** The last member left: the source ends (its bus subscription with it). */
  #close(): void {
    this.#end();
    void this.#source?.return?.().catch(() => {});
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.forget();
    this.#count();
  }

  /** Keeps the bus's count of subscriptions at one per member. */
  #count(): void {
    const counted = this.#source && !this.#ended ? Math.max(0, this.members.size - 1) : 0;
    this.bus.countShared(counted - this.#counted);
    this.#counted = counted;
  }
}

/**
 * One subscriber: what graphql-ws iterates for it. It yields nothing (its results are written to
 * its socket, already serialised) and ends when the subscription does, with its error, after the
 * results before it.
 */
class Member implements AsyncIterableIterator<ExecutionResult> {
  readonly #socket: WebSocket;
  /** The connection under the socket: corked while its messages are sent, so they leave in one write. */
  readonly #stream: Writable;
  /** `{"id":"<id>"`: the start of each of its messages. */
  readonly #head: Buffer;
  #pending: Buffer[] = [];
  /** Messages handed to the socket and not written yet. */
  #unwritten = 0;
  #done = false;
  #failure: unknown = null;
  #waiting: { resolve: (result: IteratorResult<ExecutionResult>) => void; reject: (error: unknown) => void } | null = null;
  readonly #written = () => {
    this.#unwritten--;
  };

  constructor(
    subscriber: { socket: WebSocket; stream: Writable; id: string },
    private readonly group: Group,
    private readonly maxBacklogBytes: number,
    private readonly maxUnwritten: number,
  ) {
    this.#socket = subscriber.socket;
    this.#stream = subscriber.stream;
    this.#head = Buffer.from(`{"id":${JSON.stringify(subscriber.id)}`);
  }

  /** A result's message, without its id: sent at the next flush. */
  queue(tail: Buffer): void {
    if (!this.#done) this.#pending.push(tail);
  }

  /** Hands what is queued to the socket, as one write. */
  flush(): void {
    if (this.#pending.length === 0) return;
    const messages = this.#pending;
    this.#pending = [];
    const socket = this.#socket;
    if (socket.readyState !== WebSocket.OPEN) return;
    // As graphql-ws's onNext does in app.ts: a client that does not read is dropped before its backlog grows without bound.
    if (socket.bufferedAmount > this.maxBacklogBytes) return socket.close(1013, 'subscriber too slow');
    // As the bus does with a subscription's buffer: one that falls this far behind is ended, its backlog dropped.
    if (this.#unwritten + messages.length > this.maxUnwritten) return this.end(new SubscriberOverflowError(this.maxUnwritten));
    const count = messages.length;
    this.#unwritten += count;
    // One write for all of them: ws writes each frame synchronously, so corked they leave together.
    this.#stream.cork();
    for (const tail of messages) socket.send(Buffer.concat([this.#head, tail]), { binary: false }, this.#written);
    this.#stream.uncork();
  }

  /** The subscription ended: with `failure` (graphql-ws sends it as an error, after what was queued), or complete. */
  end(failure: unknown): void {
    if (this.#done) return;
    this.flush();
    this.#done = true;
    this.group.leave(this);
    const waiting = this.#waiting;
    this.#waiting = null;
    if (failure === null) waiting?.resolve({ value: undefined, done: true });
    else if (waiting) waiting.reject(failure);
    else this.#failure = failure;
  }

  /** The subscriber left (it completed, or its socket closed): nothing more is sent for it. */
  leave(): void {
    this.#pending = [];
    this.end(null);
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    if (this.#failure !== null) {
      const failure = this.#failure;
      this.#failure = null;
      return Promise.reject(failure instanceof Error ? failure : new Error(String(failure)));
    }
    if (this.#done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  return(): Promise<IteratorResult<ExecutionResult>> {
    this.leave();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

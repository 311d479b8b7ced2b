import type { CallContext, Connector } from '../../src/connectors/types.ts';

export type Behaviour = (ctx: CallContext) => Promise<unknown>;

/**
 * A real connector whose methods the test defines: a stand-in for an external system, not for
 * anything of ours. Each call is recorded.
 */
export class ScriptedConnector implements Connector {
  readonly kind = 'SERVER_OPERATIONS' as const;
  readonly builtIn = false;
  readonly calls: { method: string; ctx: CallContext }[] = [];
  #methods = new Map<string, Behaviour>();

  constructor(readonly id = 'Test') {}

  define(method: string, behaviour: Behaviour): this {
    this.#methods.set(method, behaviour);
    return this;
  }

  hasMethod(method: string): boolean {
    return this.#methods.has(method);
  }

  methods(): string[] {
    return [...this.#methods.keys()];
  }

  async call(method: string, ctx: CallContext): Promise<unknown> {
    this.calls.push({ method, ctx });
    const behaviour = this.#methods.get(method);
    if (!behaviour) throw new Error(`no method ${method}`);
    return behaviour(ctx);
  }
}

/** A promise with its resolve exposed, to hold a call open until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

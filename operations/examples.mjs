// Small operations for trying the scheduler out: no tables, no network.
//
//   Noop  — does nothing; the cheapest possible run (benchmarks, smoke tests).
//   Fail  — always throws, to show what a failed run and its ERROR log entry look like.
//   Sleep — waits 10 s, stopping at once when the run is aborted: give it a period or
//           timeoutSeconds under 10 s to see SKIPPED and TIMED_OUT runs, or stop it with cancelRun.

import { setTimeout as sleep } from 'node:timers/promises';

export default {
  async Noop() {},

  async Fail() {
    throw new Error('Fail always fails: this is what a failed run looks like');
  },

  async Sleep(ctx) {
    // Rejects as soon as ctx.signal aborts (timeout, cancelRun, shutdown): nothing keeps running.
    await sleep(10_000, undefined, { signal: ctx.signal });
  },
};

import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config.ts';

/** The problems loadConfig lists for `env`, or [] when it accepts it. */
export function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
}

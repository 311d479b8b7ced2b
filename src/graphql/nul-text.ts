// Text with a NUL character (U+0000) is bad input (SPEC §5, §8): PostgreSQL cannot store it in a
// text column, and a query that carries one fails as an unexpected error. The fuzz test found it
// in job names, pause notes, external calls, secrets and connector ids; rather than check every
// field, every string an operation is given — in its document or its variables — is checked
// here, before anything runs: BAD_USER_INPUT, with the argument or input field it was meant for.
import { GraphQLError, Kind, visit, type ASTNode, type DocumentNode, type ExecutionResult } from 'graphql';
import type { Plugin } from 'graphql-yoga';

interface Args {
  document: DocumentNode;
  variableValues?: { readonly [name: string]: unknown } | null;
}

const NUL = '\u0000';

/** Envelop plugin for yoga (HTTP, SSE) and graphql-ws alike: both execute through it. */
export function useNoNulText(): Plugin {
  const check = (args: Args, stop: (result: ExecutionResult) => void) => {
    const field = nulField(args);
    if (field === null) return;
    stop({
      data: null,
      errors: [new GraphQLError('Text must not contain the NUL character (U+0000).', { extensions: { code: 'BAD_USER_INPUT', field } })],
    });
  };
  return {
    onExecute: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution),
    onSubscribe: ({ args, setResultAndStopExecution }) => check(args, setResultAndStopExecution),
  };
}

/** The name of the argument or input field given a string with a NUL, or null when there is none. */
export function nulField(args: Args): string | null {
  let found: string | null = null;
  const variablesWithNul = new Map<string, string | null>();
  for (const [name, value] of Object.entries(args.variableValues ?? {})) {
    const key = keyWithNul(value, null);
    if (key !== undefined) variablesWithNul.set(name, key);
  }
  visit(args.document, {
    StringValue(node, _key, parent, _path, ancestors) {
      if (found === null && node.value.includes(NUL)) found = enclosingName(parent, ancestors) ?? 'query';
    },
    Variable(node, _key, parent, _path, ancestors) {
      // Its use, not its definition (`$note: String`), says which argument it is for.
      if ((parent as ASTNode | undefined)?.kind === Kind.VARIABLE_DEFINITION) return;
      const key = variablesWithNul.get(node.name.value);
      if (found === null && key !== undefined) found = key ?? enclosingName(parent, ancestors) ?? node.name.value;
    },
  });
  // A variable the document does not use still carries the text.
  if (found === null && variablesWithNul.size > 0) {
    const [name, key] = [...variablesWithNul][0]!;
    found = key ?? name;
  }
  return found;
}

/**
 * Whether a variable's value holds a NUL in a string (or a key): undefined when not; else the
 * nearest object key above it (null when the string is the value itself or in a list of them).
 * Walked with a stack of its own: a value may be nested deeper than the call stack goes.
 */
function keyWithNul(value: unknown, key: string | null): string | null | undefined {
  const pending: [unknown, string | null][] = [[value, key]];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const [item, name] = next;
    if (typeof item === 'string') {
      if (item.includes(NUL)) return name;
    } else if (Array.isArray(item)) {
      for (const element of item) pending.push([element, name]);
    } else if (item !== null && typeof item === 'object') {
      for (const [field, element] of Object.entries(item)) {
        if (field.includes(NUL)) return field;
        pending.push([element, field]);
      }
    }
  }
  return undefined;
}

/** The nearest argument or input object field around a value in the document. */
function enclosingName(parent: unknown, ancestors: readonly (ASTNode | readonly ASTNode[])[]): string | null {
  for (const ancestor of [parent, ...[...ancestors].reverse()]) {
    if (!ancestor || Array.isArray(ancestor)) continue;
    const node = ancestor as ASTNode;
    if (node.kind === Kind.ARGUMENT || node.kind === Kind.OBJECT_FIELD) return node.name.value;
  }
  return null;
}

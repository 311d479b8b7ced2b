// A bad value in a variable is bad input like any other (SPEC §5, §8): BAD_USER_INPUT with the
// name of the input field it was meant for. graphql-js rejects such a variable before any resolver
// runs, with an error on the variable's definition ("Variable "$since" got invalid value …") that
// names the field only inside its message; this plugin adds `code` and `field` to those errors.
import {
  coerceInputValue,
  GraphQLError,
  isInputType,
  Kind,
  typeFromAST,
  visit,
  type ASTNode,
  type DocumentNode,
  type ExecutionResult,
  type GraphQLSchema,
  type VariableDefinitionNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';

interface Args {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null;
  variableValues?: { readonly [name: string]: unknown } | null;
}

/** Envelop plugin for yoga (HTTP and SSE) and graphql-ws alike: both execute through it. */
export function useVariableErrorFields(): Plugin {
  const fix = (args: Args, result: unknown, setResult: (result: ExecutionResult) => void) => {
    if (!isExecutionResult(result) || !result.errors?.some(isVariableError)) return;
    setResult({ ...result, errors: withVariableFields(result.errors, args) });
  };
  return {
    onExecute: () => ({ onExecuteDone: ({ args, result, setResult }) => fix(args, result, setResult) }),
    onSubscribe: () => ({ onSubscribeResult: ({ args, result, setResult }) => fix(args, result, setResult) }),
  };
}

/** The errors with BAD_USER_INPUT and `field` on each that is about a variable's value. */
export function withVariableFields(errors: readonly GraphQLError[], args: Args): GraphQLError[] {
  // graphql-js reports a variable's bad leaves in the order coerceInputValue finds them: coercing
  // the value again, in the same way, yields their paths in the same order.
  const seen = new Map<string, number>();
  return errors.map((error) => {
    if (!isVariableError(error)) return error;
    const definition = error.nodes![0] as VariableDefinitionNode;
    const name = definition.variable.name.value;
    const index = seen.get(name) ?? 0;
    seen.set(name, index + 1);
    const field = badFields(definition, args)[index] ?? usageName(name, args) ?? name;
    return new GraphQLError(error.message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: error.originalError,
      extensions: { ...error.extensions, code: 'BAD_USER_INPUT', field },
    });
  });
}

function isExecutionResult(result: unknown): result is ExecutionResult {
  return typeof result === 'object' && result !== null && !(Symbol.asyncIterator in result);
}

function isVariableError(error: GraphQLError): boolean {
  return error.nodes?.[0]?.kind === Kind.VARIABLE_DEFINITION && error.path === undefined;
}

/**
 * For each bad part of the variable's value, in graphql-js's order: the last input field name on
 * its path, or the field it names itself (a required field missing, an unknown field given), or
 * null when it has neither (the variable's value as a whole, an item of a list of scalars).
 */
function badFields(definition: VariableDefinitionNode, args: Args): (string | null)[] {
  const type = typeFromAST(args.schema, definition.type);
  const value = args.variableValues?.[definition.variable.name.value];
  if (!type || !isInputType(type) || value === undefined || value === null) return [];
  const fields: (string | null)[] = [];
  coerceInputValue(value, type, (path, _invalid, error) => {
    const named = /^Field "(.*)" (?:of required type ".*" was not provided|is not defined by type ".*")\./s.exec(error.message);
    const last = [...path].reverse().find((key): key is string => typeof key === 'string');
    fields.push(named?.[1] ?? last ?? null);
  });
  return fields;
}

/** The argument or input field the variable is passed to in the operation (the first use). */
function usageName(variable: string, args: Args): string | undefined {
  const operations = args.document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operations.find((o) => (args.operationName ? o.name?.value === args.operationName : true));
  let found: string | undefined;
  const search = (root: ASTNode) =>
    visit(root, {
      Variable(node, _key, parent, _path, ancestors) {
        if (found !== undefined || node.name.value !== variable) return;
        // `ancestors` stops short of the parent: the nearest argument or object field first.
        for (const ancestor of [parent, ...[...ancestors].reverse()]) {
          if (!ancestor || Array.isArray(ancestor)) continue;
          const named = ancestor as ASTNode;
          if (named.kind === Kind.ARGUMENT || named.kind === Kind.OBJECT_FIELD) {
            found = named.name.value;
            return;
          }
        }
      },
    });
  if (operation) search(operation);
  // A variable used only in a fragment the operation spreads.
  if (found === undefined) search(args.document);
  return found;
}

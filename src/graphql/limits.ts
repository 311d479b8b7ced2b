// GraphQL hardening (SPEC §8): GraphQL Armor's limits on depth, aliases, directives, tokens and
// cost, and INTROSPECTION=false. They are Envelop plugins, so they hold wherever yoga's envelop
// parses and validates: HTTP, SSE and graphql-ws alike (src/http/app.ts runs graphql-ws's
// documents through `yoga.getEnveloped`). A refused document is a validation error,
// GRAPHQL_VALIDATION_FAILED, with HTTP 400 whatever the client accepts (see REFUSED).
import { costLimitRule } from '@escape.tech/graphql-armor-cost-limit';
import { maxAliasesPlugin } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthPlugin } from '@escape.tech/graphql-armor-max-depth';
import { maxDirectivesPlugin } from '@escape.tech/graphql-armor-max-directives';
import { maxTokensPlugin } from '@escape.tech/graphql-armor-max-tokens';
import {
  type ASTNode,
  type ASTVisitor,
  type FieldNode,
  GraphQLError,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type OperationDefinitionNode,
  TypeInfo,
  type ValidationContext,
  type ValidationRule,
  visit,
  visitWithTypeInfo,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { GraphQLLimits } from '../http/web-settings.ts';
import { DEFAULT_PAGE, MAX_PAGE } from './pagination.ts';

export const VALIDATION_FAILED = 'GRAPHQL_VALIDATION_FAILED';

/**
 * HTTP 400 whatever the client accepts: yoga answers its own validation errors 200 to a client
 * that accepts only `application/json` (the GraphQL-over-HTTP spec's legacy rule, `spec: true`),
 * but SPEC §8 makes a refused document a 400 for every client.
 */
const REFUSED = { code: VALIDATION_FAILED, http: { status: 400, spec: false } };

/** Armor's messages start with "Syntax Error: " whatever the limit; the refusal is not one. */
const reworded = (error: GraphQLError) => error.message.replace(/^Syntax Error: /, '');

/** An Armor rule's refusal, reported as a validation error instead of thrown. */
const reject = {
  propagateOnRejection: false,
  onReject: [
    (context: ValidationContext | null, error: GraphQLError) => {
      context?.reportError(new GraphQLError(reworded(error), { extensions: { ...REFUSED, http: { ...REFUSED.http } } }));
    },
  ],
};

/** A graphql-js rule whose errors are refusals (HTTP 400 for every client, as the limits'). */
function refusing(rule: ValidationRule): ValidationRule {
  return (context) =>
    rule(
      new Proxy(context, {
        get(target, property) {
          if (property === 'reportError') {
            return (error: GraphQLError) =>
              target.reportError(
                new GraphQLError(error.message, { nodes: error.nodes, extensions: { ...REFUSED, http: { ...REFUSED.http } } }),
              );
          }
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      }),
    );
}

/**
 * Armor's cost multiplies a selection by a literal `first: N` only. This shows it the most a page
 * can hold instead: a `first` given by a variable counts as MAX_PAGE (500), an omitted one as
 * DEFAULT_PAGE (50), on every field that takes a `first` (fragments included), so that nesting
 * pages through variables is no way around GRAPHQL_MAX_COST.
 */
function withPageSizes(rule: ValidationRule): ValidationRule {
  return (context) => {
    const schema = context.getSchema();
    const sized = <T extends ASTNode>(node: T): T => {
      const typeInfo = new TypeInfo(schema);
      return visit(
        node,
        visitWithTypeInfo(typeInfo, {
          Field(field: FieldNode) {
            if (!typeInfo.getFieldDef()?.args.some((arg) => arg.name === 'first')) return undefined;
            const given = field.arguments?.find((arg) => arg.name.value === 'first');
            if (given?.value.kind === Kind.INT) return undefined;
            const size = given ? MAX_PAGE : DEFAULT_PAGE;
            const others = (field.arguments ?? []).filter((arg) => arg.name.value !== 'first');
            const first = {
              kind: Kind.ARGUMENT,
              name: { kind: Kind.NAME, value: 'first' },
              value: { kind: Kind.INT, value: String(size) },
            } as const;
            return { ...field, arguments: [first, ...others] };
          },
        }),
      ) as T;
    };
    const fragments = new Map<string, ReturnType<ValidationContext['getFragment']>>();
    const inner = rule(
      new Proxy(context, {
        get(target, property) {
          if (property === 'getFragment') {
            return (name: string) => {
              if (!fragments.has(name)) {
                const fragment = target.getFragment(name);
                fragments.set(name, fragment && sized(fragment));
              }
              return fragments.get(name);
            };
          }
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      }),
    ) as { OperationDefinition: { enter(node: OperationDefinitionNode): void } };
    const visitor: ASTVisitor = { OperationDefinition: { enter: (operation) => inner.OperationDefinition.enter(sized(operation)) } };
    return visitor;
  };
}

/**
 * The limits as Envelop plugins. The standard introspection query (GraphiQL's) is exempt from
 * depth and cost (Armor skips `__schema`); it has no aliases or directives and some 300 tokens.
 */
export function useGraphQLLimits(limits: GraphQLLimits, options: { introspection: boolean }): Plugin[] {
  const plugins: Plugin[] = [
    // Counted while parsing, so a huge document is refused before it is built; the error it
    // throws is coded here, and yoga keeps the code (HTTP 400).
    maxTokensPlugin({
      n: limits.tokens,
      onReject: [
        (_context: unknown, error: GraphQLError) => {
          error.message = reworded(error);
          // yoga marks every parse error `http.spec ||= true` after the parse (usePreventMutationViaGET),
          // which would make it a 200 for an `application/json` client: this `spec` stays false.
          const http = { status: 400 };
          Object.defineProperty(http, 'spec', { get: () => false, set: () => {}, enumerable: true });
          Object.assign(error.extensions, { code: VALIDATION_FAILED, http });
        },
      ],
    }),
    maxDepthPlugin({ n: limits.depth, ignoreIntrospection: true, ...reject }),
    maxAliasesPlugin({ n: limits.aliases, ...reject }),
    maxDirectivesPlugin({ n: limits.directives, ...reject }),
    // Cost: the objects an operation may resolve, a page counting its selection as often as it
    // may hold items (withPageSizes; a scalar costs nothing: GRAPHQL_MAX_TOKENS bounds the
    // width). A page of 500 runs is 1,500; a page of runs whose jobs each page 100 runs is over 5,000.
    {
      onValidate: ({ addValidationRule }) =>
        addValidationRule(
          withPageSizes(
            costLimitRule({ maxCost: limits.cost, objectCost: 1, scalarCost: 0, depthCostFactor: 1, ignoreIntrospection: true, ...reject }),
          ),
        ),
    },
  ];
  if (!options.introspection) {
    plugins.push({ onValidate: ({ addValidationRule }) => addValidationRule(refusing(NoSchemaIntrospectionCustomRule)) });
  }
  return plugins;
}

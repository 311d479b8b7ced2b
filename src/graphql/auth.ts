import { type Principal, ROLES } from '../auth/tokens.ts';
import { builder } from './builder.ts';

// Who a client is (SPEC §8). The roles themselves are scopes of the builder: Query and
// Subscription need `viewer`, Mutation `operator` (jobs.ts), the connector mutations `admin`
// (connectors.ts), each root type's scope applying to every field added to it.

export const RoleEnum = builder.enumType('Role', {
  description: 'viewer: every query and subscription; operator: + the job and run mutations; admin: + the connector mutations.',
  values: ROLES.map((role) => role.toUpperCase()) as ['VIEWER', 'OPERATOR', 'ADMIN'],
});

const PrincipalRef = builder.objectRef<Principal>('Principal').implement({
  description: 'The token a request came with: its name and role (`local`, ADMIN, when auth is off).',
  fields: (t) => ({
    name: t.exposeString('name'),
    role: t.field({ type: RoleEnum, resolve: (p) => p.role.toUpperCase() as 'VIEWER' | 'OPERATOR' | 'ADMIN' }),
  }),
});

builder.queryField('me', (t) =>
  t.field({ type: PrincipalRef, description: 'Who this request is: its token’s name and role.', resolve: (_, __, ctx) => ctx.principal }),
);

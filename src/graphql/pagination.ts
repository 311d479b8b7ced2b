import { badInput } from '../errors.ts';
import type { ObjectRef } from '@pothos/core';
import { builder, type BuilderTypes } from './builder.ts';

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;

export interface Cursor {
  at: Date;
  id: string;
}

export const encodeCursor = (cursor: Cursor): string =>
  Buffer.from(`${cursor.at.toISOString()}|${cursor.id}`, 'utf8').toString('base64url');

export function decodeCursor(text: string | null | undefined): Cursor | null {
  if (text == null) return null;
  const [iso, id] = Buffer.from(text, 'base64url').toString('utf8').split('|');
  // Only what encodeCursor writes of what PostgreSQL holds: years 0001 to 9999 (not +275760-09-13…, nor 0000).
  const at = new Date(iso ?? '');
  if (
    !id ||
    !/^\d{1,18}$/.test(id) ||
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(iso ?? '') ||
    Number.isNaN(at.getTime()) ||
    at.getUTCFullYear() < 1
  ) {
    throw badInput('after', 'The cursor is not one this API returned.');
  }
  return { at, id };
}

export function pageSize(first: number | null | undefined): number {
  const size = first ?? DEFAULT_PAGE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE) {
    throw badInput('first', `first must be between 1 and ${MAX_PAGE}.`);
  }
  return size;
}

export interface Page<T> {
  edges: { cursor: string; node: T }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
}

/** Turns rows fetched with one extra (to tell whether a next page exists) into a connection. */
export function toPage<T>(rows: T[], size: number, cursorOf: (row: T) => Cursor): Page<T> {
  const nodes = rows.slice(0, size);
  const edges = nodes.map((node) => ({ cursor: encodeCursor(cursorOf(node)), node }));
  return { edges, pageInfo: { hasNextPage: rows.length > size, endCursor: edges.at(-1)?.cursor ?? null } };
}

export const PageInfo = builder.objectRef<Page<unknown>['pageInfo']>('PageInfo').implement({
  fields: (t) => ({
    hasNextPage: t.exposeBoolean('hasNextPage'),
    endCursor: t.exposeString('endCursor', { nullable: true }),
  }),
});

/** A Relay-style connection type (`XConnection` of `XEdge`s) over `node`. */
export function connectionType<T>(name: string, node: ObjectRef<BuilderTypes, T>) {
  const edge = builder.objectRef<Page<T>['edges'][number]>(`${name}Edge`).implement({
    fields: (t) => ({
      cursor: t.exposeString('cursor'),
      // Pothos cannot narrow a generic shape; the ref guarantees it.
      node: t.field({ type: node, resolve: (e) => e.node as never }),
    }),
  });
  return builder.objectRef<Page<T>>(`${name}Connection`).implement({
    fields: (t) => ({
      edges: t.field({ type: [edge], resolve: (p) => p.edges }),
      pageInfo: t.field({ type: PageInfo, resolve: (p) => p.pageInfo }),
    }),
  });
}

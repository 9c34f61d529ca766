import { randomBytes } from 'node:crypto';

/** Random, URL-safe ids matching protocol's `Id` ([A-Za-z0-9_-]); the prefix says what the id names. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(12).toString('base64url')}`;
}

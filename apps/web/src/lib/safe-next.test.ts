import assert from 'node:assert/strict';
import { test } from 'node:test';
import { safeNext } from './safe-next';

const ORIGIN = 'https://pyreach.example.com';

test('next= keeps same-origin paths with their query and fragment', () => {
  assert.equal(safeNext('/requests/abc?tab=output#x', ORIGIN), '/requests/abc?tab=output#x');
  assert.equal(safeNext('/', ORIGIN), '/');
});

test('next= refuses everything that could leave the origin, as the decoded query hands it over', () => {
  const hostile = [
    new URLSearchParams('next=/%5Cevil.host/x').get('next'),
    new URLSearchParams('next=/%09/evil.host/x').get('next'),
    new URLSearchParams('next=/%0d%0a/evil.host').get('next'),
    '//evil.host/x',
    '/\\evil.host',
    'https://evil.host/x',
    'javascript:alert(1)',
    'evil.host',
    '',
    null,
    undefined,
    `/${'a'.repeat(3000)}`,
  ];
  for (const next of hostile) assert.equal(safeNext(next, ORIGIN), '/', JSON.stringify(next));
});

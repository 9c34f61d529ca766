import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEnv } from '../env';
import { authTimeOf, roleFromClaims } from './sso';

const cfg = {
  roleMap: { groups: { 'pyreach-admins': 'admin', sre: 'operator' }, dept: { security: 'approver' } },
  defaultRole: 'viewer',
} as const;

test('the highest role any mapped claim value gives wins; unmapped claims give the default', () => {
  assert.deepEqual(roleFromClaims(cfg, { groups: ['sre', 'pyreach-admins'] }), {
    role: 'admin',
    matched: ['groups=sre', 'groups=pyreach-admins'],
  });
  assert.equal(roleFromClaims(cfg, { groups: 'sre', dept: 'security' }).role, 'approver');
  assert.equal(roleFromClaims(cfg, { groups: ['nobody'] }).role, 'viewer');
  assert.equal(roleFromClaims({ ...cfg, defaultRole: 'operator' }, {}).role, 'operator');
});

test('claim values that are not strings, and inherited keys, map to nothing (an IdP cannot name __proto__ into admin)', () => {
  assert.equal(roleFromClaims(cfg, { groups: [{ sre: true }, 7, null] }).role, 'viewer');
  assert.equal(roleFromClaims(cfg, { groups: ['constructor', '__proto__', 'toString'] }).role, 'viewer');
  assert.equal(roleFromClaims(cfg, { groups: { 0: 'pyreach-admins' } }).role, 'viewer');
});

test('auth_time is read from the ID token; a token without one, or garbage, gives null', () => {
  const jwt = (claims: object) => `h.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.s`;
  assert.equal(
    authTimeOf(jwt({ sub: 'a', auth_time: 1_800_000_000 }))?.toISOString(),
    '2027-01-15T08:00:00.000Z',
  );
  assert.equal(authTimeOf(jwt({ sub: 'a' })), null);
  assert.equal(authTimeOf(jwt({ auth_time: '1800000000' })), null);
  assert.equal(authTimeOf('not-a-jwt'), null);
  assert.equal(authTimeOf(null), null);
});

const oidcEnv: NodeJS.ProcessEnv = {
  NODE_ENV: 'test',
  PYREACH_DATA_DIR: '/tmp/pyreach-sso-env-test',
  BETTER_AUTH_SECRET: 'x'.repeat(32),
  OIDC_ISSUER: 'https://idp.example.com',
  OIDC_CLIENT_ID: 'pyreach',
  OIDC_CLIENT_SECRET: 'secret',
};

test('the role map is checked at start-up and a bad entry is named by its key', () => {
  const env = parseEnv({ ...oidcEnv, PYREACH_OIDC_ROLE_MAP: '{"groups":{"sre":"operator"}}' });
  assert.deepEqual(env.oidc?.roleMap, { groups: { sre: 'operator' } });
  assert.throws(
    () => parseEnv({ ...oidcEnv, PYREACH_OIDC_ROLE_MAP: '{"groups":{"sre":"root"}}' }),
    /PYREACH_OIDC_ROLE_MAP\.groups\.sre: role must be viewer, operator, approver or admin/,
  );
  assert.throws(
    () => parseEnv({ ...oidcEnv, PYREACH_OIDC_ROLE_MAP: '{groups' }),
    /PYREACH_OIDC_ROLE_MAP: must be JSON/,
  );
  assert.throws(
    () => parseEnv({ ...oidcEnv, PYREACH_OIDC_DEFAULT_ROLE: 'root' }),
    /PYREACH_OIDC_DEFAULT_ROLE/,
  );
});

test('password sign-in can be switched off only with OIDC; linking by e-mail is off unless asked for', () => {
  assert.equal(parseEnv({ ...oidcEnv, PYREACH_PASSWORD_SIGNIN: 'off' }).passwordSignIn, false);
  assert.equal(parseEnv(oidcEnv).passwordSignIn, true);
  assert.equal(parseEnv(oidcEnv).oidc?.linkByEmail, false);
  assert.equal(parseEnv({ ...oidcEnv, PYREACH_OIDC_LINK_BY_EMAIL: 'on' }).oidc?.linkByEmail, true);
  const { OIDC_ISSUER: _i, ...noOidc } = oidcEnv;
  assert.throws(
    () => parseEnv({ ...noOidc, PYREACH_PASSWORD_SIGNIN: 'off' }),
    /PYREACH_PASSWORD_SIGNIN=off needs OIDC/,
  );
  assert.throws(
    () => parseEnv({ ...oidcEnv, PYREACH_PASSWORD_SIGNIN: 'maybe' }),
    /PYREACH_PASSWORD_SIGNIN: use on or off/,
  );
});

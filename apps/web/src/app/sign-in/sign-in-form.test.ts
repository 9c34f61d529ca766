/**
 * What the sign-in page renders for the deployment's sign-in options, server-side as Next renders it first:
 * with password sign-in off there is no password form at all (only the provider's button), so nobody is offered
 * a route the server refuses (PASSWORD_SIGNIN_DISABLED — test/integration/sso.int.test.ts). The browser case
 * with both on is e2e/sso.spec.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { SignInForm } from './sign-in-form';

const render = (password: boolean, sso: { providerId: string; name: string } | null) =>
  renderToStaticMarkup(createElement(SignInForm, { options: { password, sso } }));

describe('sign-in form', () => {
  it('with password sign-in off shows the provider button and no password form', () => {
    const html = render(false, { providerId: 'oidc', name: 'Test IdP' });
    assert.match(html, /Sign in with Test IdP/);
    assert.doesNotMatch(html, /type="password"/);
    assert.doesNotMatch(html, /<form/);
  });

  it('with both on shows the form and the button (the control)', () => {
    const html = render(true, { providerId: 'oidc', name: 'Test IdP' });
    assert.match(html, /Sign in with Test IdP/);
    assert.match(html, /type="password"/);
  });
});

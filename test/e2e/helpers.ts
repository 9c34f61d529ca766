import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { expect, type Browser, type BrowserContext, type Page } from '@playwright/test';
import { REPO_ROOT, SEED_PASSWORD } from '../support/control-plane';
import { eventually as eventuallyBase } from '../support/eventually';

export const SHOTS = path.join(REPO_ROOT, 'test-results/screenshots');
mkdirSync(SHOTS, { recursive: true });

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** A fresh browser context signed in through the real sign-in form. */
export async function signedIn(
  browser: Browser,
  email: string,
  password: string = SEED_PASSWORD,
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto('/sign-in');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  // exact: the SSO provider's "Sign in with …" button is on the page too.
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/sign-in'));
  await expect(page.getByTestId('current-role')).toBeVisible();
  return { context, page };
}

/** The browser tests wait longer: a page, a server, an agent and a target on two shared cores. */
export const eventually = <T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  timeoutMs = 60_000,
) => eventuallyBase(what, fn, timeoutMs, 250);

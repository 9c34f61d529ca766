import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { expect, test, type Browser, type BrowserContext, type Locator, type Page } from '@playwright/test';
import { REPO_ROOT, SEED_PASSWORD } from '../support/control-plane';
import { eventually as eventuallyBase } from '../support/eventually';

export const SHOTS = path.join(REPO_ROOT, 'test-results/screenshots');
mkdirSync(SHOTS, { recursive: true });

/** A full-page screenshot in test-results/screenshots, attached to the running test's report as well. */
export async function shot(page: Page, name: string, opts: { fullPage?: boolean } = {}): Promise<void> {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: opts.fullPage ?? true });
  await test.info().attach(name, { path: file, contentType: 'image/png' });
}

/** The window sizes every dashboard point is checked at (issue 16's acceptance). */
export const VIEWPORTS = [
  { width: 1280, height: 800 },
  { width: 1920, height: 1080 },
] as const;

/** The page is no wider than the window (nothing cut off to the right at this size). */
export async function noHorizontalOverflow(page: Page, what: string): Promise<void> {
  // A string: this tsconfig has no DOM types; it runs in the page.
  const { scroll, client } = await page.evaluate<{ scroll: number; client: number }>(
    '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })',
  );
  expect(scroll, `${what}: page wider than the window`).toBeLessThanOrEqual(client);
}

/**
 * At each of VIEWPORTS: no horizontal overflow, and a screenshot `${name}-${width}` (the whole page, or just
 * `element`) kept and attached. The window gets its size back afterwards.
 */
export async function atEachSize(page: Page, name: string, element?: Locator): Promise<void> {
  const before = page.viewportSize();
  for (const size of VIEWPORTS) {
    await page.setViewportSize(size);
    await noHorizontalOverflow(page, `${name} at ${size.width}×${size.height}`);
    if (!element) {
      await shot(page, `${name}-${size.width}`);
      continue;
    }
    await element.scrollIntoViewIfNeeded();
    const file = path.join(SHOTS, `${name}-${size.width}.png`);
    await element.screenshot({ path: file });
    await test.info().attach(`${name}-${size.width}`, { path: file, contentType: 'image/png' });
  }
  if (before) await page.setViewportSize(before);
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

'use client';

/**
 * Starts a sign-in at the SSO provider (better-auth's /sign-in/social answers the authorization URL). `params`
 * go to the provider's authorization request: prompt=login and max_age=0 for a re-authentication. Returns a
 * message when it could not start; otherwise the browser is on its way.
 */
export async function startSso(
  providerId: string,
  callbackURL: string,
  errorCallbackURL: string,
  params?: Record<string, string>,
): Promise<string | null> {
  const res = await fetch('/api/auth/sign-in/social', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      provider: providerId,
      callbackURL,
      errorCallbackURL,
      ...(params ? { additionalParams: params } : {}),
    }),
  }).catch(() => null);
  const body = (await res?.json().catch(() => null)) as { url?: unknown } | null;
  if (!res?.ok || typeof body?.url !== 'string')
    return 'The sign-in could not be started. Retry in a moment.';
  window.location.assign(body.url);
  return null;
}

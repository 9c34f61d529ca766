/**
 * Next.js 16 proxy (formerly middleware): a fresh nonce per page request and the Content-Security-Policy that
 * names it. Next reads the policy from the request headers and puts the nonce on its own scripts; the root
 * layout puts it on the theme boot script. Scripts run only when they carry the nonce (or are loaded by one:
 * 'strict-dynamic'); nothing may frame a page; forms and <base> stay on this origin. Styles stay 'unsafe-inline'
 * because React's style attributes need it (no script can run from a style). /api answers carry their own
 * nothing-allowed policy (server/control-plane.ts).
 */
import { NextResponse, type NextRequest } from 'next/server';

export function contentSecurityPolicy(nonce: string, dev: boolean): string {
  return [
    "default-src 'self'",
    // Next's dev server evaluates its module code; production never does.
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ''}`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export function proxy(request: NextRequest): NextResponse {
  const nonce = btoa(crypto.randomUUID());
  const csp = contentSecurityPolicy(nonce, process.env.NODE_ENV === 'development');
  const headers = new Headers(request.headers);
  headers.set('x-nonce', nonce);
  headers.set('content-security-policy', csp);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set('content-security-policy', csp);
  return response;
}

export const config = {
  // Pages only: /api answers are data with their own policy; static assets need none.
  matcher: [{ source: '/((?!api/|_next/static|_next/image|favicon.ico).*)' }],
};

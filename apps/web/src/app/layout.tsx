import type { ReactNode } from 'react';
import type { Metadata, Viewport } from 'next';
import { headers } from 'next/headers';
import { THEME_BOOT_SCRIPT } from '../lib/client/theme';
import './globals.css';

export const metadata: Metadata = {
  title: { default: 'Pyreach', template: '%s · Pyreach' },
  description: 'Governed remote execution into live Python processes',
};

export const viewport: Viewport = {
  themeColor: [
    { media: '(prefers-color-scheme: light)', color: '#fcfcfd' },
    { media: '(prefers-color-scheme: dark)', color: '#16181d' },
  ],
};

export default async function RootLayout({ children }: { children: ReactNode }) {
  // The per-request nonce of the Content-Security-Policy (src/proxy.ts); reading it renders pages per request.
  const nonce = (await headers()).get('x-nonce') ?? undefined;
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        {/* A constant of ours (no user data): sets the theme class before first paint. */}
        <script nonce={nonce} dangerouslySetInnerHTML={{ __html: THEME_BOOT_SCRIPT }} />
      </head>
      <body className="min-h-dvh">{children}</body>
    </html>
  );
}

import type { ReactNode } from 'react';
import './globals.css';

export const metadata = { title: 'Pyreach', description: 'Governed remote execution into live Python processes' };

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}

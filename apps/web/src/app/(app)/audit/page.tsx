import type { Metadata } from 'next';
import { Suspense } from 'react';
import { AuditExplorer } from './audit-explorer';

export const metadata: Metadata = { title: 'Audit' };

export default function AuditPage() {
  return (
    <Suspense>
      <AuditExplorer />
    </Suspense>
  );
}

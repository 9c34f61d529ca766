import type { Metadata } from 'next';
import { Suspense } from 'react';
import { NewRequestForm } from './new-request-form';
import { LoadingRows } from '../../../../components/ui/states';

export const metadata: Metadata = { title: 'New request' };

export default function NewRequestPage() {
  return (
    <Suspense fallback={<LoadingRows rows={6} />}>
      <NewRequestForm />
    </Suspense>
  );
}

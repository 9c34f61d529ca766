'use client';
import type { UseFormRegister } from 'react-hook-form';
import { MAX_ROLLOUT_CONCURRENCY } from '@pyreach/protocol/api';
import { Card, CardContent, CardHeader, CardTitle } from '../../../../components/ui/card';
import { Input, Textarea } from '../../../../components/ui/input';
import { Field } from '../../../../components/ui/label';
import type { RequestDraft } from './request-draft';

/** At least 1, whatever was typed (an empty or zero field means the smallest sensible value). */
const atLeastOne = (v: unknown) => Math.max(1, Number(v) || 1);

const NUMBERS = [
  {
    name: 'concurrency',
    id: 'concurrency',
    label: 'Concurrency',
    hint: 'Targets at once',
    max: MAX_ROLLOUT_CONCURRENCY,
  },
  { name: 'maxFailures', id: 'max-failures', label: 'Stop after failures', hint: undefined, max: 10000 },
  { name: 'budgetSeconds', id: 'budget', label: 'Time budget (s)', hint: 'In the target', max: 3600 },
  {
    name: 'pickupTimeoutSeconds',
    id: 'pickup',
    label: 'Pickup timeout (s)',
    hint: 'Wait for a safe point',
    max: 600,
  },
] as const;

/** 3. Reason and rollout: why (approvers and auditors read it), and how fast and how far it may go wrong. */
export function ReasonAndRollout({
  register,
  reasonError,
}: {
  register: UseFormRegister<RequestDraft>;
  reasonError: string | null;
}) {
  return (
    <Card>
      <CardHeader>
        <CardTitle>3. Reason and rollout</CardTitle>
      </CardHeader>
      <CardContent className="grid gap-4">
        <Field
          id="reason"
          label={
            <>
              Reason <span className="text-destructive">*</span>
            </>
          }
          hint="Approvers and auditors read this. Link the incident or ticket."
          error={reasonError}
        >
          <Textarea
            id="reason"
            required
            aria-invalid={reasonError ? true : undefined}
            placeholder="INC-1234: orders failing with opaque errors; need DEBUG on demo.orders for 10 minutes"
            {...register('reason')}
          />
        </Field>
        <div className="grid gap-3 sm:grid-cols-4">
          {NUMBERS.map((n) => (
            <Field key={n.id} id={n.id} label={n.label} hint={n.hint}>
              <Input
                id={n.id}
                type="number"
                min={1}
                max={n.max}
                {...register(n.name, { setValueAs: atLeastOne })}
              />
            </Field>
          ))}
        </div>
      </CardContent>
    </Card>
  );
}

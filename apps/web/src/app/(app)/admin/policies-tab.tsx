'use client';
import { useState } from 'react';
import { Controller, useForm } from 'react-hook-form';
import { ROLES, type GovernanceChangeRow, type PolicyInput, type PolicyRow } from '@pyreach/protocol/api';
import { LabelList } from '../../../components/status';
import { Alert } from '../../../components/ui/alert';
import { Badge } from '../../../components/ui/badge';
import { Button } from '../../../components/ui/button';
import { Card } from '../../../components/ui/card';
import { Switch } from '../../../components/ui/checkbox';
import {
  Dialog,
  DialogContent,
  DialogDescription,
  DialogFooter,
  DialogHeader,
  DialogTitle,
} from '../../../components/ui/dialog';
import { Input } from '../../../components/ui/input';
import { Field } from '../../../components/ui/label';
import { ErrorState, LoadingRows } from '../../../components/ui/states';
import { Table, TBody, TD, TH, THead, TR } from '../../../components/ui/table';
import { api, errorMessage, useCall } from '../../../lib/client/api';
import { formatLabels, parseLabels } from '../../../lib/client/labels';

/** A policy as the editor holds it: the API's shape, with the labels as typed text. */
type PolicyDraft = Required<Omit<PolicyInput, 'matchLabels' | 'description'>> & {
  description: string;
  matchLabels: string;
};

const EMPTY: PolicyDraft = {
  name: '',
  description: '',
  matchLabels: '',
  matchAction: {},
  priority: 0,
  requiredApprovals: 1,
  approverRoles: ['approver', 'admin'],
  allowCustomCode: false,
  approvalValidMinutes: 60,
};

const draftOf = (p: PolicyRow): PolicyDraft => ({
  name: p.name,
  description: p.description ?? '',
  matchLabels: formatLabels(p.matchLabels),
  // Kept as it is when the rules are edited here (the API sets it: script ids, risk, custom vs library).
  matchAction: p.matchAction,
  priority: p.priority,
  requiredApprovals: p.requiredApprovals,
  approverRoles: p.approverRoles,
  allowCustomCode: p.allowCustomCode,
  approvalValidMinutes: p.approvalValidMinutes,
});

export function PoliciesTab() {
  const { data, error, loading, reload } = useCall('listPolicies', {});
  const [editing, setEditing] = useState<{ id: string | null; draft: PolicyDraft } | null>(null);
  const [err, setErr] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const waits = (change: GovernanceChangeRow | null) =>
    setNotice(
      change?.state === 'pending'
        ? `This loosens who may approve (${change.reasons.join('; ')}): it takes effect when a second admin confirms it under Users → Changes waiting for a second admin.`
        : change?.state === 'unconfirmed'
          ? 'In effect, but no second admin exists to confirm it: the requests it affects are marked “unconfirmed governance”.'
          : null,
    );
  async function remove(p: PolicyRow) {
    setErr(null);
    try {
      waits((await api('deletePolicy', { params: { id: p.id } })).change);
      reload();
    } catch (error) {
      setErr(error);
    }
  }
  return (
    <div className="grid gap-4">
      <div className="flex justify-end">
        <Button onClick={() => setEditing({ id: null, draft: EMPTY })}>New policy</Button>
      </div>
      {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      {notice ? <Alert variant="warning" title={notice} data-testid="governance-notice" /> : null}
      {error ? (
        <ErrorState error={error} onRetry={reload} />
      ) : loading && !data ? (
        <LoadingRows />
      ) : (
        <Card>
          <Table aria-label="Policies">
            <THead>
              <TR>
                <TH>Name</TH>
                <TH>Matches</TH>
                <TH>Priority</TH>
                <TH>Approvals</TH>
                <TH>Approvers</TH>
                <TH>Custom code</TH>
                <TH>Valid</TH>
                <TH>
                  <span className="sr-only">Actions</span>
                </TH>
              </TR>
            </THead>
            <TBody>
              {(data?.policies ?? []).map((p) => (
                <TR key={p.id}>
                  <TD>
                    <div className="font-medium">{p.name}</div>
                    {p.description ? (
                      <div className="max-w-xs text-xs text-muted-foreground">{p.description}</div>
                    ) : null}
                  </TD>
                  <TD>
                    {Object.keys(p.matchLabels).length ? (
                      <LabelList labels={p.matchLabels} />
                    ) : (
                      <span className="text-xs text-muted-foreground">every host</span>
                    )}
                  </TD>
                  <TD className="tabular-nums">{p.priority}</TD>
                  <TD className="tabular-nums">
                    {p.requiredApprovals === 0 ? 'automatic' : p.requiredApprovals}
                  </TD>
                  <TD>{p.approverRoles.join(', ')}</TD>
                  <TD>
                    {p.allowCustomCode ? (
                      <Badge variant="warning">allowed</Badge>
                    ) : (
                      <Badge variant="secondary">library only</Badge>
                    )}
                  </TD>
                  <TD>{p.approvalValidMinutes} min</TD>
                  <TD className="whitespace-nowrap text-right">
                    <Button
                      size="sm"
                      variant="outline"
                      onClick={() => setEditing({ id: p.id, draft: draftOf(p) })}
                    >
                      Edit
                    </Button>{' '}
                    {p.id !== 'default' ? (
                      <Button size="sm" variant="ghost" onClick={() => void remove(p)}>
                        Delete
                      </Button>
                    ) : null}
                  </TD>
                </TR>
              ))}
            </TBody>
          </Table>
        </Card>
      )}
      <Dialog open={editing !== null} onOpenChange={(o) => !o && setEditing(null)}>
        <DialogContent className="max-w-xl">
          {editing ? (
            <PolicyEditor
              key={editing.id ?? 'new'}
              id={editing.id}
              draft={editing.draft}
              onCancel={() => setEditing(null)}
              onSaved={(change) => {
                setEditing(null);
                waits(change);
                reload();
              }}
            />
          ) : null}
        </DialogContent>
      </Dialog>
    </div>
  );
}

const asNumber = (v: unknown) => Number(v);

function PolicyEditor({
  id,
  draft,
  onCancel,
  onSaved,
}: {
  id: string | null;
  draft: PolicyDraft;
  onCancel: () => void;
  onSaved: (change: GovernanceChangeRow | null) => void;
}) {
  const form = useForm<PolicyDraft>({ defaultValues: draft });
  const [err, setErr] = useState<unknown>(null);
  const { register } = form;
  const save = form.handleSubmit(async (v) => {
    setErr(null);
    const labels = parseLabels(v.matchLabels);
    if (labels.error) {
      form.setError('matchLabels', { message: labels.error });
      return;
    }
    const body: PolicyInput = { ...v, description: v.description || null, matchLabels: labels.labels };
    try {
      const saved = id
        ? await api('updatePolicy', { params: { id }, body })
        : await api('createPolicy', { body });
      onSaved(saved.change);
    } catch (error) {
      setErr(error);
    }
  });
  return (
    <form onSubmit={save} className="grid gap-3">
      <DialogHeader>
        <DialogTitle>{id ? `Edit ${draft.name}` : 'New policy'}</DialogTitle>
        <DialogDescription>Requests keep the rules they were filed under.</DialogDescription>
      </DialogHeader>
      <div className="grid gap-3 sm:grid-cols-2">
        <Field id="p-name" label="Name">
          <Input id="p-name" required {...register('name')} />
        </Field>
        <Field
          id="p-labels"
          label="Host labels"
          hint="key=value, comma-separated; empty = every host"
          error={form.formState.errors.matchLabels?.message}
        >
          <Input id="p-labels" className="font-mono" {...register('matchLabels')} />
        </Field>
        <Field id="p-desc" label="Description" className="sm:col-span-2">
          <Input id="p-desc" {...register('description')} />
        </Field>
        <Field id="p-prio" label="Priority">
          <Input id="p-prio" type="number" {...register('priority', { setValueAs: asNumber })} />
        </Field>
        <Field id="p-appr" label="Approvals needed" hint="0 = automatic">
          <Input
            id="p-appr"
            type="number"
            min={0}
            max={10}
            {...register('requiredApprovals', { setValueAs: asNumber })}
          />
        </Field>
        <Field id="p-valid" label="Approval valid (minutes)">
          <Input
            id="p-valid"
            type="number"
            min={1}
            {...register('approvalValidMinutes', { setValueAs: asNumber })}
          />
        </Field>
        <Controller
          control={form.control}
          name="approverRoles"
          render={({ field }) => (
            <fieldset className="grid gap-1">
              <legend className="mb-1 text-sm font-medium">Who may approve</legend>
              {ROLES.filter((r) => r !== 'viewer').map((r) => (
                <label key={r} className="flex items-center gap-2 text-sm">
                  <input
                    type="checkbox"
                    className="size-4"
                    checked={field.value.includes(r)}
                    onChange={(e) =>
                      field.onChange(
                        e.target.checked ? [...field.value, r] : field.value.filter((x) => x !== r),
                      )
                    }
                  />
                  {r}
                </label>
              ))}
            </fieldset>
          )}
        />
        <Controller
          control={form.control}
          name="allowCustomCode"
          render={({ field }) => (
            <div className="flex items-center gap-2">
              <Switch id="p-custom" checked={field.value} onCheckedChange={field.onChange} />
              <label htmlFor="p-custom" className="text-sm">
                Allow custom code
              </label>
            </div>
          )}
        />
      </div>
      {err ? <Alert variant="destructive" title={errorMessage(err)} /> : null}
      <DialogFooter>
        <Button type="button" variant="outline" onClick={onCancel}>
          Cancel
        </Button>
        <Button type="submit">Save policy</Button>
      </DialogFooter>
    </form>
  );
}

'use client';
/**
 * New request: where (TargetPicker), what (CodePicker), why and how fast (ReasonAndRollout), and which policy
 * that falls under (PolicyPanel). The draft lives in one react-hook-form; request-draft.ts says what is wrong
 * with it and what body it becomes. Errors show once the person tried to file.
 */
import { useRouter, useSearchParams } from 'next/navigation';
import { useEffect, useMemo, useRef, useState } from 'react';
import { useForm, useWatch } from 'react-hook-form';
import { SendIcon } from 'lucide-react';
import { PageHeader } from '../../../../components/shell/app-shell';
import { defaultsOf } from '../../../../components/schema-form';
import { Alert } from '../../../../components/ui/alert';
import { Button } from '../../../../components/ui/button';
import { PreflightCard } from '../../../../components/requests/preflight-panel';
import { api, errorMessage, useCall, useCancellable } from '../../../../lib/client/api';
import { canDo, useUser } from '../../../../lib/client/session';
import { useDebounced } from '../../../../lib/client/use-debounced';
import { CodePicker } from './code-picker';
import { PolicyPanel } from './policy-panel';
import {
  draftErrors,
  emptyDraft,
  hasErrors,
  selectorOf,
  targetsOf,
  retryDraft,
  toCreateRequest,
  type RequestDraft,
} from './request-draft';
import { ReasonAndRollout } from './rollout-fields';
import { TargetPicker } from './target-picker';

/** `?tid=` from "Request on this thread" (the process's live stacks): a positive integer, else none. */
function threadParam(v: string | null): number | null {
  return v && /^[1-9]\d{0,9}$/.test(v) ? Number(v) : null;
}

export function NewRequestForm() {
  const user = useUser();
  const router = useRouter();
  const search = useSearchParams();
  const scripts = useCall('listScripts', {});
  const form = useForm<RequestDraft>({
    defaultValues: emptyDraft({
      targets: (search.get('targets') ?? '').split(',').filter(Boolean),
      scriptId: search.get('script') ?? '',
      tid: threadParam(search.get('tid')),
    }),
  });
  const { control, register, setValue, handleSubmit, formState, reset } = form;
  // "Retry the failed ones" (?retry=<request id>): that request's code and parameters, its failed targets only.
  const retryOf = search.get('retry');
  const retry = useCall('getRequest', retryOf ? { params: { id: retryOf } } : null);
  const keepParamsOf = useRef<string | null>(null);
  const retried = useRef(false);
  useEffect(() => {
    const r = retry.data?.request;
    if (!r || retried.current) return;
    retried.current = true;
    const d = retryDraft(r);
    keepParamsOf.current = d.codeMode === 'library' ? d.scriptId : null;
    reset(d);
  }, [retry.data, reset]);
  const draft = useWatch({ control }) as RequestDraft;
  const [submitError, setSubmitError] = useState<unknown>(null);
  // Break-glass is offered only to people an admin granted it to (the server checks again, and at dispatch).
  const breakGlass = useCall('myBreakGlass', {});
  const granted = breakGlass.data?.grant ?? null;
  const [emergency, setEmergency] = useState(false);
  const [emergencyReason, setEmergencyReason] = useState('');
  const emergencyError =
    emergency && emergencyReason.trim().length < 10 ? 'Say what is on fire (10+ characters).' : null;

  const scriptList = useMemo(() => scripts.data?.scripts ?? [], [scripts.data]);
  const script = scriptList.find((s) => s.id === draft.scriptId);
  // The first script by default; a script's parameters start at its defaults.
  useEffect(() => {
    if (!draft.scriptId && scriptList[0]) setValue('scriptId', scriptList[0].id);
  }, [draft.scriptId, scriptList, setValue]);
  useEffect(() => {
    if (!script) return;
    // A retried request's parameters are kept, not reset to the script's defaults.
    if (keepParamsOf.current === script.id) {
      keepParamsOf.current = null;
      return;
    }
    setValue('params', defaultsOf(script.paramsSchema));
  }, [script, setValue]);

  const targets = useMemo(() => targetsOf(draft), [draft]);
  const errors = draftErrors(draft, targets, script);
  const shown = formState.isSubmitted ? errors : null;

  // Which policy applies, recomputed a moment after the targets or the kind change.
  const policyKey = useDebounced(targets ? JSON.stringify({ targets, kind: draft.codeMode }) : null, 300);
  const policy = useCancellable(policyKey, (signal) =>
    api('uiPolicyPreview', { body: JSON.parse(policyKey!) }, { signal }),
  );

  // Each target's pre-flight verdict (exited, remote debugging off, its agent's own policy, thread states).
  const preflightKey = useDebounced(
    targets && (draft.codeMode === 'custom' || script)
      ? JSON.stringify(
          draft.codeMode === 'library'
            ? { targets, kind: 'library', scriptId: script!.id }
            : { targets, kind: 'custom', ...(draft.custom ? { code: draft.custom } : {}) },
        )
      : null,
    300,
  );
  const preflight = useCancellable(preflightKey, (signal) =>
    api('uiPreflight', { body: JSON.parse(preflightKey!) }, { signal }),
  );

  if (!canDo(user.role, 'request:create')) {
    return (
      <>
        <PageHeader title="New request" />
        <Alert variant="warning" title="Your role cannot file requests">
          You are signed in as <strong>{user.role}</strong>. Operators and admins file requests; ask one of
          them, or an admin to change your role.
        </Alert>
      </>
    );
  }

  const submit = handleSubmit(async (values) => {
    setSubmitError(null);
    const now = targetsOf(values);
    if (hasErrors(draftErrors(values, now, script)) || !now || emergencyError) return;
    try {
      const body = {
        ...toCreateRequest(values, now, script),
        ...(emergency && granted ? { emergency: true, emergencyReason: emergencyReason.trim() } : {}),
      };
      const r = await api('createRequest', { body });
      router.push(`/requests/${r.request.id}`);
    } catch (err) {
      setSubmitError(err);
    }
  });

  return (
    <form onSubmit={submit} noValidate aria-label="New request">
      <PageHeader
        title="New request"
        description="Pick where, what and why. Nothing runs until the policy's approvals are in."
      />
      <div className="grid gap-5 lg:grid-cols-[minmax(0,1fr)_20rem]">
        <div className="grid min-w-0 gap-5">
          <TargetPicker control={control} register={register} error={shown?.targets ?? null} />
          {draft.tid !== null && draft.targetMode === 'processes' ? (
            <Alert
              variant={draft.selected?.length === 1 ? 'default' : 'warning'}
              title={`On thread ${draft.tid}`}
              data-testid="thread-choice"
            >
              {draft.selected?.length === 1
                ? 'Picked from the live stacks: the code runs on this thread of the chosen process (it is part of what approvers approve).'
                : 'A thread applies to one process only: with several chosen, the engine picks the thread.'}{' '}
              <Button type="button" variant="link" size="sm" onClick={() => setValue('tid', null)}>
                Any thread
              </Button>
            </Alert>
          ) : null}
          <CodePicker
            control={control}
            scripts={scripts}
            policy={targets ? (policy.data ?? null) : null}
            errors={shown}
          />
          <PreflightCard
            report={targets ? preflight.data?.preflight : undefined}
            error={targets ? preflight.error : null}
            loading={preflight.loading}
          />
          <ReasonAndRollout register={register} reasonError={shown?.reason ?? null} />
        </div>
        <aside className="lg:sticky lg:top-4 lg:self-start">
          <PolicyPanel
            hasTargets={targets !== null}
            policy={policy}
            selectorLabels={draft.targetMode === 'selector' ? selectorOf(draft).labels.labels : null}
          >
            {granted ? (
              <div
                className="grid gap-2 rounded-md border border-destructive/40 p-3"
                data-testid="break-glass"
              >
                <label className="flex items-center gap-2 text-sm font-medium">
                  <input
                    type="checkbox"
                    checked={emergency}
                    onChange={(e) => setEmergency(e.target.checked)}
                    aria-describedby="break-glass-warning"
                  />
                  Emergency (break-glass)
                </label>
                {emergency ? (
                  <>
                    <Alert
                      variant="destructive"
                      id="break-glass-warning"
                      title="Runs at once, without approval"
                    >
                      It skips every approval, is marked as break-glass everywhere, notifies whoever watches
                      break-glass, and waits for a second person to review it afterwards. Use it only when
                      waiting would do more harm.
                    </Alert>
                    <label className="grid gap-1 text-sm" htmlFor="emergency-reason">
                      What is on fire
                      <textarea
                        id="emergency-reason"
                        className="min-h-16 rounded-md border bg-background p-2 text-sm"
                        value={emergencyReason}
                        onChange={(e) => setEmergencyReason(e.target.value)}
                      />
                    </label>
                    {formState.isSubmitted && emergencyError ? (
                      <p className="text-sm text-destructive">{emergencyError}</p>
                    ) : null}
                  </>
                ) : null}
              </div>
            ) : null}
            {submitError ? (
              <Alert variant="destructive" title="The request was not filed">
                {errorMessage(submitError)}
              </Alert>
            ) : null}
            <Button type="submit" disabled={formState.isSubmitting} className="w-full">
              <SendIcon aria-hidden="true" />{' '}
              {formState.isSubmitting ? 'Filing…' : emergency ? 'Run now (break-glass)' : 'File request'}
            </Button>
          </PolicyPanel>
        </aside>
      </div>
    </form>
  );
}

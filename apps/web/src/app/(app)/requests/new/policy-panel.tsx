'use client';
import type { ReactNode } from 'react';
import { ShieldCheckIcon } from 'lucide-react';
import type { PolicyPreview } from '@pyreach/protocol/api';
import type { Labels } from '@pyreach/protocol/common';
import { LabelList } from '../../../../components/status';
import { Alert } from '../../../../components/ui/alert';
import { Badge } from '../../../../components/ui/badge';
import { Card, CardContent, CardHeader, CardTitle } from '../../../../components/ui/card';
import { errorMessage, isApiError, type Resource } from '../../../../lib/client/api';

/** Which policy applies to the targets as they are now, and the filing button (the summary beside the form). */
export function PolicyPanel({
  hasTargets,
  policy,
  selectorLabels,
  children,
}: {
  hasTargets: boolean;
  policy: Resource<PolicyPreview>;
  selectorLabels: Labels | null;
  children: ReactNode;
}) {
  const p = policy.data;
  return (
    <Card>
      <CardHeader>
        <CardTitle className="flex items-center gap-2">
          <ShieldCheckIcon aria-hidden="true" className="size-4" /> Policy
        </CardTitle>
      </CardHeader>
      <CardContent className="grid gap-3 text-sm" aria-live="polite" data-testid="policy-preview">
        {!hasTargets ? (
          <p className="text-muted-foreground">Pick targets to see which policy applies.</p>
        ) : policy.error ? (
          <Alert
            variant="destructive"
            title={
              isApiError(policy.error, 'POLICY_DENIED')
                ? 'No policy allows this'
                : 'Could not resolve the policy'
            }
          >
            {errorMessage(policy.error)}
          </Alert>
        ) : !p ? (
          <p className="text-muted-foreground">Resolving…</p>
        ) : (
          <>
            <div>
              <div className="text-xs text-muted-foreground">Applies</div>
              <div className="font-medium" data-testid="policy-name">
                {p.policies.map((x) => x.name).join(', ') || '—'}
              </div>
            </div>
            <div>
              <div className="text-xs text-muted-foreground">Approvals needed</div>
              <div className="text-lg font-semibold" data-testid="policy-approvals">
                {p.requiredApprovals === 0 ? 'none (runs at once)' : p.requiredApprovals}
              </div>
              {p.requiredApprovals > 0 ? (
                <div className="text-xs text-muted-foreground">
                  from {p.approverRoles.join(' or ')}, not you
                </div>
              ) : null}
            </div>
            <div className="flex flex-wrap gap-1">
              <Badge variant={p.allowCustomCode ? 'secondary' : 'outline'}>
                {p.allowCustomCode ? 'custom code allowed' : 'library only'}
              </Badge>
              <Badge variant="outline">approval valid {p.approvalValidMinutes} min</Badge>
            </div>
            <div className="text-xs text-muted-foreground">
              {p.matched} target process{p.matched === 1 ? '' : 'es'} now
            </div>
            {p.customDenied ? <Alert variant="destructive" title="Custom code is not allowed here" /> : null}
          </>
        )}
        {selectorLabels && Object.keys(selectorLabels).length ? (
          <div>
            <div className="text-xs text-muted-foreground">Selector labels</div>
            <LabelList labels={selectorLabels} />
          </div>
        ) : null}
        {children}
      </CardContent>
    </Card>
  );
}

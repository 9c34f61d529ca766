/**
 * Which policy a request would fall under, before it is filed: the same resolution the request service runs
 * at creation (services/policy.ts resolvePolicy over the labels of every target host), answered without
 * storing anything, so the form can say "needs 2 approvals from approver/admin" up front.
 */
import { z } from 'zod';
import { Id, Labels } from '@pyreach/protocol/common';
import { handle, HttpError } from '../../../../server/http/handler';
import { defineRoute } from '../../../../server/http/spec';

const Targets = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('processes'),
    processes: z
      .array(
        z.object({ agentId: Id, pid: z.number().int().positive(), startTime: z.string().regex(/^\d+$/) }),
      )
      .min(1)
      .max(1000),
  }),
  z.object({
    type: z.literal('selector'),
    labels: Labels,
    process: z
      .object({
        cmdlineContains: z.string().max(256).optional(),
        user: z.string().max(256).optional(),
        exeContains: z.string().max(256).optional(),
      })
      .default({}),
  }),
]);

const spec = defineRoute({
  method: 'POST',
  path: '/api/ui/policy-preview',
  summary: 'The effective policy for a set of targets (dashboard, before filing a request)',
  tag: 'policies',
  auth: { action: 'policy:read' },
  maxBodyBytes: 256 * 1024,
  body: z.object({ targets: Targets, kind: z.enum(['library', 'custom']).optional() }).strict(),
});

export const POST = handle(spec, async ({ rt, body }) => {
  const prisma = rt.db.prisma;
  let labels: Record<string, string>[];
  let matched: number;
  if (body.targets.type === 'processes') {
    const ids = [...new Set(body.targets.processes.map((p) => p.agentId))];
    const agents = await prisma.agent.findMany({
      where: { id: { in: ids }, revokedAt: null },
      select: { id: true, labels: true },
    });
    if (agents.length !== ids.length)
      throw new HttpError(400, 'VALIDATION', 'a target agent is unknown or revoked');
    labels = agents.map((a) => a.labels as Record<string, string>);
    matched = body.targets.processes.length;
  } else {
    const found = await rt.services.inventory.matchSelector(prisma, {
      labels: body.targets.labels,
      process: body.targets.process,
    });
    labels = [body.targets.labels, ...found.map((f) => f.labels)];
    matched = found.length;
  }
  const eff = await rt.services.policy.resolvePolicy(prisma, labels);
  const policies = await prisma.policy.findMany({
    where: { id: { in: eff.policyIds } },
    select: { id: true, name: true, description: true },
  });
  const customDenied = body.kind === 'custom' && !eff.allowCustomCode;
  return {
    matched,
    policy: policies.find((p) => p.id === eff.policyId) ?? null,
    policies,
    requiredApprovals: eff.requiredApprovals,
    approverRoles: eff.approverRoles,
    allowCustomCode: eff.allowCustomCode,
    approvalValidMinutes: eff.approvalValidMinutes,
    customDenied,
  };
});

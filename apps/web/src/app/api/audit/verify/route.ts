import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.verifyAudit, async ({ rt }) => {
  const r = await rt.services.audit.verifyAuditChain(rt.db.prisma);
  return r.ok
    ? { valid: true, count: r.count, lastSeq: r.lastSeq.toString() }
    : { valid: false, count: r.count, brokenAt: r.brokenAt.toString(), reason: r.reason };
});

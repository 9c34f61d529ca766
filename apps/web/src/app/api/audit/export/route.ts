import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const GET = handle(api.exportAudit, async ({ rt, user, query }) => {
  const { format, from, to, ...rest } = query;
  const filter = { ...rest, ...(from ? { from: new Date(from) } : {}), ...(to ? { to: new Date(to) } : {}) };
  await rt.services.audit.recordAudit(rt.db.prisma, {
    actor: rt.services.actorOf(user),
    action: 'audit.export',
    data: { ...query },
  });
  const chunks = rt.services.audit.exportAudit(rt.db.prisma, filter, format)[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  // Streamed: constant memory however many events match; the shutdown drain waits for it to finish.
  const end = rt.inflight.begin();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await chunks.next();
        if (next.done) {
          end();
          controller.close();
        } else controller.enqueue(encoder.encode(next.value));
      } catch (err) {
        end();
        rt.log.error({ err }, 'audit export failed mid-stream');
        controller.error(err);
      }
    },
    async cancel() {
      end();
      await chunks.return?.();
    },
  });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return new Response(stream, {
    headers: {
      'content-type': format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="pyreach-audit-${stamp}.${format}"`,
      'cache-control': 'no-store',
    },
  });
});

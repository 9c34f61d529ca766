import { handle } from '../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

export const GET = handle(routes.exportAudit, async ({ services, plane, actor, query }) => {
  const exported = await services.audit.export(actor, query);
  const chunks = exported.chunks[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  // Streamed: constant memory however many events match; the shutdown drain waits for it to finish.
  const end = plane.inflight.begin();
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
        plane.log.error({ err }, 'audit export failed mid-stream');
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
      'content-type':
        query.format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="pyreach-audit-${stamp}.${query.format}"`,
      'cache-control': 'no-store',
      // The signed checkpoint the export stops at (CSV has no room for it in the body).
      ...(exported.checkpoint ? { 'x-pyreach-audit-checkpoint': JSON.stringify(exported.checkpoint) } : {}),
    },
  });
});

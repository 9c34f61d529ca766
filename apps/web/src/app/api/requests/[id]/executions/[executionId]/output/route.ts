import { handle } from '../../../../../../../server/http/handler';
import { routes } from '@pyreach/protocol/routes';

/** Streamed in slices (up to the 1 MiB cap and its marker): the whole stored output, as the target printed it. */
const SLICE = 64 * 1024;

export const GET = handle(routes.downloadExecutionOutput, async ({ services, params }) => {
  const out = await services.requests.output(params.id, params.executionId);
  let at = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= out.bytes.byteLength) {
        controller.close();
        return;
      }
      controller.enqueue(out.bytes.subarray(at, at + SLICE));
      at += SLICE;
    },
  });
  return new Response(stream, {
    headers: {
      'content-type': 'text/plain; charset=utf-8',
      'content-disposition': `attachment; filename="${out.fileName}"`,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...(out.droppedBytes !== null ? { 'x-pyreach-output-dropped-bytes': String(out.droppedBytes) } : {}),
    },
  });
});

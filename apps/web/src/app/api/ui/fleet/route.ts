/**
 * The dashboard's fleet view: every host with its agent (status, last seen, version, labels) and its full
 * Python-process snapshot (container, threads, ...), in one read. /api/fleet/* serves the scriptable,
 * filterable lists; this one gives the page everything it shows without N+1 requests.
 */
import { z } from 'zod';
import { handle } from '../../../../server/http/handler';
import { defineRoute } from '../../../../server/http/spec';

const spec = defineRoute({
  method: 'GET',
  path: '/api/ui/fleet',
  summary: 'Hosts with agent facts and full process snapshots (dashboard)',
  tag: 'fleet',
  auth: { action: 'fleet:read' },
  query: z.object({ includeRevoked: z.enum(['true', 'false']).optional() }).strict(),
});

export const GET = handle(spec, async ({ rt, query }) => {
  const hosts = await rt.db.prisma.host.findMany({
    where: query.includeRevoked === 'true' ? {} : { agent: { revokedAt: null } },
    orderBy: { hostname: 'asc' },
    include: {
      agent: {
        select: {
          id: true,
          name: true,
          labels: true,
          status: true,
          lastSeenAt: true,
          version: true,
          revokedAt: true,
          enrolledAt: true,
        },
      },
      processes: { orderBy: { pid: 'asc' } },
    },
  });
  return {
    hosts: hosts.map((h) => ({
      id: h.id,
      hostname: h.hostname,
      os: h.os,
      kernel: h.kernel,
      arch: h.arch,
      scannedAt: h.scannedAt,
      agent: { ...h.agent, connectedHere: rt.agents.isConnected(h.agent.id) },
      processes: h.processes.map((p) => ({
        id: p.id,
        pid: p.pid,
        nsPid: p.nsPid,
        startTime: p.startTime,
        uid: p.uid,
        user: p.user,
        exe: p.exe,
        cmdline: p.cmdline,
        cwd: p.cwd,
        pythonVersion: p.pythonVersion,
        freeThreaded: p.freeThreaded,
        remoteDebugEnabled: p.remoteDebugEnabled,
        inContainer: p.inContainer,
        container: p.container,
        threads: p.threads,
        inspectError: p.inspectError,
        seenAt: p.seenAt,
      })),
    })),
  };
});

import { handle } from '../../../../server/http/handler';
import { api } from '../../../../server/http/api-spec';

export const POST = handle(api.enroll, async ({ rt, body }) => {
  const agent = await rt.services.agents.enrollAgent(rt.db.prisma, body);
  rt.ui.fleetChanged(null);
  return {
    agentId: agent.id,
    signingPublicKey: rt.services.signing.publicKeyPem,
    signingKeyId: rt.services.signing.keyId,
  };
});

/**
 * Namespace → policy labels, decided per process (issue 14 item 3). Pod facts come from the agent, so on their
 * own they select targets and never decide policy; an admin may declare, on a join token (at mint) or per agent
 * (overriding the token's), which namespaces carry which policy labels. A process's policy labels are then its
 * host's labels plus the labels declared for the namespace its agent reports it in — so two processes on one
 * host get different policies, while an agent inventing a namespace nobody declared for it gains nothing, and
 * another agent reporting the same namespace without the declaration gets nothing from it.
 *
 * `processLabeler` is THE function filing (policy pricing), the policy preview and dispatch (the gate before
 * signing, every wave) use. A declaration that makes a policy weaker or absent for some process is a governance
 * change like a policy loosening (second admin; see governance.ts).
 *
 * A database writer must not pick the policy either: every declaration the control plane writes — at token mint,
 * at enrolment (the agent's NULL, "follow the token", bound to the token it enrolled with) and with every
 * `namespace_labels.set` — is signed with the attestation key (outside the database), and the labeler uses a
 * declaration only when its signature verifies. One that does not is not replaced by anything: no process of
 * that agent in a namespace is priced at all (filing and preview POLICY_DENIED, dispatch `refused`, each naming
 * why). Neither "no declaration" nor an older one is safe to fall back to — a declaration can make a namespace
 * stricter than its host, so dropping it loosens — and refusing cannot loosen anything.
 */
import { sign, verify } from 'node:crypto';
import {
  SetAgentNamespaceLabels,
  type GovernanceChangeRow,
  type NamespaceLabels,
} from '@pyreach/protocol/api';
import { canonicalJson } from '@pyreach/protocol/canonical';
import type { Labels } from '@pyreach/protocol/common';
import type { Db, PrismaClient, Tx } from '@pyreach/db';
import { SCRIPTS } from '@pyreach/scripts';
import { requireUser, type Actor } from './actor';
import type { AttestationKey } from './attest';
import { appendAudit } from './audit';
import { outcome, type Outcome } from './effects';
import { AppError, parseInput } from './errors';
import { atLeastAsStrict, changeRowOf, looserRules, propose } from './governance';
import { policyForHost, policyOf, type RequestAction } from './policy';
import { containerIdentityOf, labelsOf, namespaceLabelsOf } from './rows';

/** A target process: its agent and the (pid, start time) that name it for good. */
export interface ProcessRef {
  agentId: string;
  pid: number;
  startTime: string;
}

/**
 * The declaration an agent's columns say is in force: its own (an admin's override), else its join token's, else
 * none — as stored, signed or not (what the admin API shows; policy reads `verifiedDeclarationOf`).
 */
export function declarationOf(agent: {
  namespaceLabels: unknown;
  joinToken?: { namespaceLabels: unknown } | null;
}): NamespaceLabels {
  if (agent.namespaceLabels !== null && agent.namespaceLabels !== undefined)
    return namespaceLabelsOf(agent.namespaceLabels);
  return agent.joinToken ? namespaceLabelsOf(agent.joinToken.namespaceLabels) : {};
}

// ---- signatures -----------------------------------------------------------------------------------------------

const SIGNED = 'pyreach-namespace-labels-v1\n';

/** What a declaration's signature binds: whose it is and its value (an agent's also the token it follows). */
export type DeclarationFacts =
  | { subjectType: 'join_token'; id: string; value: unknown }
  | { subjectType: 'agent'; id: string; joinTokenId: string | null; value: unknown };

// Canonical JSON of the value as it reads back from the JSONB column (key order does not matter).
const declarationBytes = (f: DeclarationFacts) =>
  Buffer.from(SIGNED + canonicalJson({ ...f, value: f.value ?? null }), 'utf8');

/** The control plane's signature over a declaration it writes (the attestation key). */
export function signDeclaration(key: Pick<AttestationKey, 'privateKey'>, f: DeclarationFacts): string {
  return sign(null, declarationBytes(f), key.privateKey).toString('base64');
}

/** Whether a stored declaration is one the control plane signed for exactly this subject. */
export function declarationVerifies(
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  f: DeclarationFacts,
  signature: string | null,
): boolean {
  if (!key || !signature) return false;
  try {
    return verify(null, declarationBytes(f), key.publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** The columns `verifiedDeclarationOf` reads (select them with the agent). */
export const DECLARATION_COLUMNS = {
  id: true,
  joinTokenId: true,
  namespaceLabels: true,
  namespaceLabelsAttestation: true,
  joinToken: { select: { id: true, namespaceLabels: true, namespaceLabelsAttestation: true } },
} as const;

type DeclarationRow = {
  id: string;
  joinTokenId: string | null;
  namespaceLabels: unknown;
  namespaceLabelsAttestation: string | null;
  joinToken?: { id: string; namespaceLabels: unknown; namespaceLabelsAttestation: string | null } | null;
};

/** The declaration in force, or why none can be trusted (a column the control plane did not sign as it is). */
export type VerifiedDeclaration = { ok: true; declaration: NamespaceLabels } | { ok: false; reason: string };

/**
 * The declaration in force for an agent, from signed columns only: the agent's own (its signature binds the
 * agent, the join token it enrolled with and the value, NULL included), and, where that is NULL, its token's
 * (signed at mint and with each change). Anything that does not verify — a value, a NULL, a token id or a
 * signature changed behind the control plane's back, or a row from before signing — is `ok: false`.
 */
export function verifiedDeclarationOf(
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  agent: DeclarationRow,
  /** Token signatures already checked (keyed by id, signature and value), shared by the agents of one read. */
  tokenCache?: Map<string, boolean>,
): VerifiedDeclaration {
  const own = agent.namespaceLabels ?? null;
  const agentFacts = {
    subjectType: 'agent' as const,
    id: agent.id,
    joinTokenId: agent.joinTokenId,
    value: own,
  };
  if (!declarationVerifies(key, agentFacts, agent.namespaceLabelsAttestation))
    return {
      ok: false,
      reason: `the namespace declaration of agent ${agent.id} does not carry the control plane's signature (changed outside the control plane?)`,
    };
  if (own !== null) return { ok: true, declaration: namespaceLabelsOf(own) };
  const token = agent.joinToken;
  if (!token) return { ok: true, declaration: {} };
  const tokenFacts = { subjectType: 'join_token' as const, id: token.id, value: token.namespaceLabels };
  const cacheKey = `${token.id}\n${token.namespaceLabelsAttestation}\n${canonicalJson(token.namespaceLabels ?? null)}`;
  let tokenOk = tokenCache?.get(cacheKey);
  if (tokenOk === undefined) {
    tokenOk = declarationVerifies(key, tokenFacts, token.namespaceLabelsAttestation);
    tokenCache?.set(cacheKey, tokenOk);
  }
  if (token.id !== agent.joinTokenId || !tokenOk)
    return {
      ok: false,
      reason: `the namespace declaration of join token ${token.id} (agent ${agent.id}) does not carry the control plane's signature (changed outside the control plane?)`,
    };
  return { ok: true, declaration: namespaceLabelsOf(token.namespaceLabels) };
}

/**
 * A process's policy labels: the host's, plus those declared for `namespace` (the declaration wins on a key both
 * name: it is the more specific). A namespace without a declaration — or no pod at all — adds nothing.
 */
export function effectiveLabels(
  host: Labels,
  declaration: NamespaceLabels,
  namespace: string | null | undefined,
): Labels {
  const declared = namespace ? Object.hasOwn(declaration, namespace) && declaration[namespace] : undefined;
  return declared ? { ...host, ...declared } : host;
}

type AgentFacts = { labels: Labels; declaration: VerifiedDeclaration } | null;

/** A process that cannot be priced: its agent's declaration does not verify and it runs in a namespace. */
export const untrustedDeclaration = (reason: string, p: ProcessRef) =>
  new AppError('POLICY_DENIED', `process ${p.agentId}:${p.pid}: ${reason}`, {
    userMessage: `no policy can be applied to process ${p.pid} on agent ${p.agentId}: ${reason}; an admin must declare its namespace labels again`,
  });

/** A labeler: the policy labels of one process; `prime` reads many agents at once. */
export interface ProcessLabeler {
  (p: ProcessRef): Promise<Labels | null>;
  /** Reads these agents (and, for those that need them, their processes' namespaces) in one query each. */
  prime(agentIds: readonly string[]): void;
}

/**
 * Policy labels per target process, each lookup once per labeler: an agent's labels and declaration (verified
 * with `key`, see verifiedDeclarationOf), and — only for an agent with a declaration, or one that does not
 * verify — the namespace its agent reports for each of its processes now (its current inventory; a process it
 * does not report is priced by its host's labels alone). null: the agent is unknown or revoked. A process in a
 * namespace on an agent whose declaration does not verify throws POLICY_DENIED (untrustedDeclaration) — its
 * host's labels alone could be looser than what was declared; a process outside any namespace is priced by its
 * host's labels, which no declaration touches. No key: no declaration verifies. `prime` the agents a request or
 * wave names first: two queries for all of them rather than up to two per agent. Make one per filing, preview
 * or dispatch wave (the inventory may change between them: dispatch re-prices).
 */
export function processLabeler(db: Db, key: Pick<AttestationKey, 'publicKey'> | undefined): ProcessLabeler {
  const agents = new Map<string, Promise<AgentFacts>>();
  const namespaces = new Map<string, Promise<Map<string, string>>>();
  // Many agents share a join token (a DaemonSet fleet): its signature is checked once per labeler.
  const verified = new Map<string, boolean>();
  const factsOf = (row: ({ labels: unknown; revokedAt: Date | null } & DeclarationRow) | null): AgentFacts =>
    row && !row.revokedAt
      ? { labels: labelsOf(row.labels), declaration: verifiedDeclarationOf(key, row, verified) }
      : null;
  const needsNamespaces = (f: AgentFacts) =>
    !!f && (!f.declaration.ok || Object.keys(f.declaration.declaration).length > 0);
  const namespaceMap = (rows: { pid: number; startTime: string; containerIdentity: unknown }[]) => {
    const m = new Map<string, string>();
    for (const r of rows) {
      const ns = containerIdentityOf(r.containerIdentity ?? null)?.pod?.namespace;
      if (ns) m.set(`${r.pid}:${r.startTime}`, ns);
    }
    return m;
  };
  // A primed lookup nobody awaits must not become an unhandled rejection; whoever awaits it still sees it.
  const handled = <T>(p: Promise<T>) => {
    p.catch(() => undefined);
    return p;
  };
  const select = { labels: true, revokedAt: true, ...DECLARATION_COLUMNS } as const;
  const agentFacts = (agentId: string) => {
    let a = agents.get(agentId);
    if (!a) {
      a = db.agent.findUnique({ where: { id: agentId }, select }).then(factsOf);
      agents.set(agentId, a);
    }
    return a;
  };
  const namespacesOf = (agentId: string) => {
    let n = namespaces.get(agentId);
    if (!n) {
      n = db.pythonProcess
        .findMany({
          where: { host: { agentId } },
          select: { pid: true, startTime: true, containerIdentity: true },
        })
        .then(namespaceMap);
      namespaces.set(agentId, n);
    }
    return n;
  };
  const label = async (p: ProcessRef) => {
    const facts = await agentFacts(p.agentId);
    if (!facts) return null;
    const d = facts.declaration;
    if (d.ok && Object.keys(d.declaration).length === 0) return facts.labels;
    const ns = (await namespacesOf(p.agentId)).get(`${p.pid}:${p.startTime}`);
    if (!d.ok) {
      if (ns) throw untrustedDeclaration(d.reason, p);
      return facts.labels;
    }
    return effectiveLabels(facts.labels, d.declaration, ns);
  };
  const prime = (agentIds: readonly string[]) => {
    const fresh = [...new Set(agentIds)].filter((id) => !agents.has(id));
    if (fresh.length === 0) return;
    const rows = handled(
      db.agent
        .findMany({ where: { id: { in: fresh } }, select })
        .then((rs) => new Map(rs.map((r) => [r.id, factsOf(r)]))),
    );
    for (const id of fresh) agents.set(id, handled(rows.then((m) => m.get(id) ?? null)));
    const needing = fresh.filter((id) => !namespaces.has(id));
    const byAgent = handled(
      rows.then(async (m) => {
        const ids = needing.filter((id) => needsNamespaces(m.get(id) ?? null));
        if (ids.length === 0) return new Map<string, Map<string, string>>();
        const procs = await db.pythonProcess.findMany({
          where: { host: { agentId: { in: ids } } },
          select: {
            pid: true,
            startTime: true,
            containerIdentity: true,
            host: { select: { agentId: true } },
          },
        });
        const lists = new Map<string, typeof procs>(ids.map((id) => [id, []]));
        for (const r of procs) lists.get(r.host.agentId)?.push(r);
        return new Map([...lists].map(([id, list]) => [id, namespaceMap(list)]));
      }),
    );
    for (const id of needing) namespaces.set(id, handled(byAgent.then((m) => m.get(id) ?? new Map())));
  };
  return Object.assign(label, { prime });
}

/**
 * Policy labels of each process (aligned with `targets`; null where the agent is unknown or revoked; throws
 * POLICY_DENIED for a process no verified declaration prices, see processLabeler).
 */
export async function labelsOfProcesses(
  db: Db,
  key: Pick<AttestationKey, 'publicKey'> | undefined,
  targets: ProcessRef[],
): Promise<(Labels | null)[]> {
  const label = processLabeler(db, key);
  label.prime(targets.map((t) => t.agentId));
  return Promise.all(targets.map(label));
}

// ---- governance: what counts as loosening ---------------------------------------------------------------------

/** Every action a policy can tell apart: custom code and each library script (its id and risk). */
const ACTIONS: RequestAction[] = [
  { kind: 'custom', scriptId: null },
  ...SCRIPTS.map((s) => ({ kind: 'library', scriptId: s.id })),
];

/**
 * Why replacing declaration `before` by `after` (for processes on hosts labelled `host`) loosens a policy for
 * some process: for each namespace whose labels change and each action, the policy that would apply after is
 * absent before (it lets in what nothing allowed) or not at least as strict as the one before. Empty: it only
 * tightens, or changes nothing a policy looks at. Judged against the policies as they are now (like policy
 * changes: conservative per namespace, whatever processes exist now).
 */
export async function namespaceLoosening(
  db: Db,
  host: Labels,
  before: NamespaceLabels,
  after: NamespaceLabels,
): Promise<string[]> {
  const policies = (await db.policy.findMany()).map(policyOf);
  const reasons = new Set<string>();
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  for (const ns of names) {
    const lb = effectiveLabels(host, before, ns);
    const la = effectiveLabels(host, after, ns);
    if (canonicalJson(lb) === canonicalJson(la)) continue;
    for (const action of ACTIONS) {
      const pb = policyForHost(policies, lb, action);
      const pa = policyForHost(policies, la, action);
      if (!pa || pa.id === pb?.id) continue;
      const what = action.kind === 'custom' ? 'custom code' : `script ${action.scriptId}`;
      if (!pb) reasons.add(`namespace ${ns}: policy ${pa.name} now lets in ${what}, which no policy allowed`);
      else if (!atLeastAsStrict(pa, pb))
        reasons.add(
          `namespace ${ns}: policy ${pa.name} instead of ${pb.name} (${looserRules(pb, pa).join('; ')})`,
        );
    }
  }
  return [...reasons];
}

// ---- writing -------------------------------------------------------------------------------------------------

export type NamespaceSubject = 'join_token' | 'agent';

/**
 * The write itself, audited `namespace_labels.set` (also what a confirmed governance change applies): a token's
 * declaration, or an agent's override (null: follow the token again), signed with the attestation key (see
 * verifiedDeclarationOf: an unsigned write would price nothing).
 */
export async function writeNamespaceLabels(
  tx: Tx,
  actor: Actor,
  key: AttestationKey | undefined,
  subjectType: NamespaceSubject,
  subjectId: string,
  value: NamespaceLabels | null,
  data: { before: NamespaceLabels | null; changeId?: string },
  now: Date = new Date(),
): Promise<void> {
  if (!key) throw noKey();
  if (subjectType === 'join_token') {
    const v = value ?? {};
    const signature = signDeclaration(key, { subjectType, id: subjectId, value: v });
    await tx.joinToken.update({
      where: { id: subjectId },
      data: { namespaceLabels: v, namespaceLabelsAttestation: signature },
    });
  } else {
    const { joinTokenId } = await tx.agent.findUniqueOrThrow({
      where: { id: subjectId },
      select: { joinTokenId: true },
    });
    const signature = signDeclaration(key, { subjectType, id: subjectId, joinTokenId, value });
    if (value === null)
      // NULL, not JSON null: the agent follows its join token again.
      await tx.$executeRaw`UPDATE "agent" SET "namespaceLabels" = NULL, "namespaceLabelsAttestation" = ${signature} WHERE "id" = ${subjectId}`;
    else
      await tx.agent.update({
        where: { id: subjectId },
        data: { namespaceLabels: value, namespaceLabelsAttestation: signature },
      });
  }
  await appendAudit(
    tx,
    {
      actor,
      action: 'namespace_labels.set',
      subjectType,
      subjectId,
      data: { before: data.before, after: value, ...(data.changeId ? { changeId: data.changeId } : {}) },
    },
    now,
  );
}

const noKey = () =>
  new AppError('INTERNAL', 'a namespace declaration is signed with the attestation key', {
    userMessage: 'internal error',
  });

/**
 * Sets a declaration inside `tx` as a governance change: when it loosens a policy for some process it is
 * proposed (pending: not applied until a second admin confirms; unconfirmed where no other admin exists: applied
 * and flagged), else applied at once. Returns the change (null: none needed) and whether it was applied.
 */
export async function declareInTx(
  tx: Tx,
  actor: Actor,
  userId: string,
  subject: { type: NamespaceSubject; id: string; host: Labels },
  before: { stored: NamespaceLabels | null; inForce: NamespaceLabels; untrusted?: string },
  after: { stored: NamespaceLabels | null; inForce: NamespaceLabels },
  key: AttestationKey | undefined,
  now: Date,
): Promise<{ change: GovernanceChangeRow | null; applied: boolean }> {
  const reasons = await namespaceLoosening(tx, subject.host, before.inForce, after.inForce);
  // The declaration in force did not verify (written outside the control plane): what it "was" is unknown, so
  // whatever is declared now is judged against nothing trusted — a second admin looks at it.
  if (before.untrusted && Object.keys(after.inForce).length > 0)
    reasons.push(`${before.untrusted}; declaring it again needs a second admin`);
  if (reasons.length === 0) {
    await writeNamespaceLabels(
      tx,
      actor,
      key,
      subject.type,
      subject.id,
      after.stored,
      { before: before.stored },
      now,
    );
    return { change: null, applied: true };
  }
  if (!key) throw noKey();
  const change = await propose(
    tx,
    actor,
    userId,
    {
      kind: 'namespace_labels.set',
      subjectType: subject.type,
      subjectId: subject.id,
      data: { before: before.stored, after: after.stored, host: subject.host },
      reasons,
    },
    key,
    now,
  );
  if (change.state === 'unconfirmed')
    await writeNamespaceLabels(
      tx,
      actor,
      key,
      subject.type,
      subject.id,
      after.stored,
      {
        before: before.stored,
        changeId: change.id,
      },
      now,
    );
  return { change: changeRowOf(change), applied: change.state === 'unconfirmed' };
}

const agentNotFound = (id: string) =>
  new AppError('NOT_FOUND', `agent ${id} not found`, { userMessage: 'agent not found' });

/**
 * PUT /api/agents/{id}/namespace-labels (admin): the agent's own declaration, or null to follow its join
 * token's. A governance change when it loosens (see declareInTx); audited either way.
 */
export async function setAgentNamespaceLabels(
  db: PrismaClient,
  actor: Actor,
  agentId: string,
  body: SetAgentNamespaceLabels,
  key: AttestationKey | undefined,
  now: Date = new Date(),
): Promise<Outcome<{ change: GovernanceChangeRow | null }>> {
  const user = requireUser(actor, 'agent:manage');
  const { namespaceLabels } = parseInput(SetAgentNamespaceLabels, body, 'namespace labels');
  const result = await db.$transaction(async (tx) => {
    await tx.$queryRawUnsafe('SELECT id FROM "agent" WHERE id = $1 FOR UPDATE', agentId);
    const agent = await tx.agent.findUnique({
      where: { id: agentId },
      include: { joinToken: { select: DECLARATION_COLUMNS.joinToken.select } },
    });
    if (!agent) throw agentNotFound(agentId);
    if (agent.revokedAt)
      throw new AppError('INVALID_STATE', `agent ${agentId} is revoked`, {
        userMessage: 'agent is revoked',
      });
    const stored = agent.namespaceLabels === null ? null : namespaceLabelsOf(agent.namespaceLabels);
    const verified = verifiedDeclarationOf(key, agent);
    return declareInTx(
      tx,
      actor,
      user.id,
      { type: 'agent', id: agentId, host: labelsOf(agent.labels) },
      verified.ok
        ? { stored, inForce: verified.declaration }
        : { stored, inForce: {}, untrusted: verified.reason },
      {
        stored: namespaceLabels,
        inForce: declarationOf({ namespaceLabels, joinToken: agent.joinToken }),
      },
      key,
      now,
    );
  });
  return outcome({ change: result.change }, [{ kind: 'fleet', hostId: null }]);
}

/**
 * The upgrade step for rows written before declarations were signed (migration 20261207020000): signs the
 * current declaration of every join token and agent that carries NO signature, as the operator who runs it
 * vouches for them (`npm run -w apps/web sign-namespace-labels`; audited `namespace_labels.sign_unsigned` with
 * what was signed). A row whose signature is present but wrong is left alone — that is tampering, and an admin
 * declares it again. Run it once, right after migrating: run later, it would also sign what a database writer
 * stripped of its signature since.
 */
export async function signUnsignedDeclarations(
  db: PrismaClient,
  actor: Actor,
  key: AttestationKey,
  now: Date = new Date(),
): Promise<{ joinTokens: string[]; agents: string[] }> {
  return db.$transaction(async (tx) => {
    const tokens = await tx.joinToken.findMany({
      where: { namespaceLabelsAttestation: null },
      select: { id: true, namespaceLabels: true },
    });
    for (const t of tokens) {
      const value = namespaceLabelsOf(t.namespaceLabels);
      await tx.joinToken.update({
        where: { id: t.id },
        data: {
          namespaceLabelsAttestation: signDeclaration(key, { subjectType: 'join_token', id: t.id, value }),
        },
      });
    }
    const agents = await tx.agent.findMany({
      where: { namespaceLabelsAttestation: null },
      select: { id: true, joinTokenId: true, namespaceLabels: true },
    });
    for (const a of agents) {
      const value = a.namespaceLabels === null ? null : namespaceLabelsOf(a.namespaceLabels);
      await tx.agent.update({
        where: { id: a.id },
        data: {
          namespaceLabelsAttestation: signDeclaration(key, {
            subjectType: 'agent',
            id: a.id,
            joinTokenId: a.joinTokenId,
            value,
          }),
        },
      });
    }
    await appendAudit(
      tx,
      {
        actor,
        action: 'namespace_labels.sign_unsigned',
        data: {
          joinTokens: tokens.map((t) => ({ id: t.id, namespaceLabels: t.namespaceLabels })),
          agents: agents.map((a) => ({
            id: a.id,
            joinTokenId: a.joinTokenId,
            namespaceLabels: a.namespaceLabels,
          })),
        },
      },
      now,
    );
    return { joinTokens: tokens.map((t) => t.id), agents: agents.map((a) => a.id) };
  });
}

/**
 * What a confirmed governance change writes: the same audited writes the user and policy services make when
 * no confirmation is needed (kept here so governance.ts depends on neither).
 */
import type { Appliers } from './governance';
import { policyAppliers } from './policy';
import { writeRole } from './users';
import { namespaceLabelsOf } from './rows';
import { writeNamespaceLabels } from './namespace-labels';

export const APPLIERS: Appliers = {
  async setRole(tx, actor, userId, role, changeId) {
    await writeRole(tx, actor, userId, role, changeId);
  },
  async createPolicy(tx, actor, key, id, rules, changeId) {
    await policyAppliers.createPolicy(tx, actor, key, id, rules, changeId);
  },
  async updatePolicy(tx, actor, key, id, rules, changeId) {
    await policyAppliers.updatePolicy(tx, actor, key, id, rules, changeId);
  },
  deletePolicy: (tx, actor, key, id, changeId) => policyAppliers.deletePolicy(tx, actor, key, id, changeId),
  async setNamespaceLabels(tx, actor, key, subjectType, subjectId, value, changeId) {
    const row =
      subjectType === 'join_token'
        ? await tx.joinToken.findUniqueOrThrow({
            where: { id: subjectId },
            select: { namespaceLabels: true },
          })
        : await tx.agent.findUniqueOrThrow({ where: { id: subjectId }, select: { namespaceLabels: true } });
    const before = row.namespaceLabels === null ? null : namespaceLabelsOf(row.namespaceLabels);
    await writeNamespaceLabels(tx, actor, key, subjectType, subjectId, value, { before, changeId });
  },
};

/**
 * What a confirmed governance change writes: the same audited writes the user and policy services make when
 * no confirmation is needed (kept here so governance.ts depends on neither).
 */
import type { Appliers } from './governance';
import { policyAppliers } from './policy';
import { writeRole } from './users';

export const APPLIERS: Appliers = {
  async setRole(tx, actor, userId, role, changeId) {
    await writeRole(tx, actor, userId, role, changeId);
  },
  async createPolicy(tx, actor, id, rules, changeId) {
    await policyAppliers.createPolicy(tx, actor, id, rules, changeId);
  },
  async updatePolicy(tx, actor, id, rules, changeId) {
    await policyAppliers.updatePolicy(tx, actor, id, rules, changeId);
  },
  deletePolicy: (tx, actor, id, changeId) => policyAppliers.deletePolicy(tx, actor, id, changeId),
};

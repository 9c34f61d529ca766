/** What a job targets and how it runs: shared by signed jobs (job.ts) and the API's request shapes (api.ts). Browser-safe. */
import { z } from 'zod';

export const JobTarget = z.object({
  pid: z.number().int().positive(),
  /** Start time (clock ticks since boot) the control plane saw; the agent refuses if the pid was reused. */
  startTime: z.string().regex(/^\d+$/),
  /** Optional native thread id to run on instead of the main thread. */
  tid: z.number().int().positive().optional(),
});
export type JobTarget = z.infer<typeof JobTarget>;

export const JobOptions = z.object({
  inline: z.boolean().default(false),
  /** Seconds the code may run inside the target before it is stopped (TIME_BUDGET_EXCEEDED). */
  budgetSeconds: z.number().positive().max(3600).default(30),
  /** Seconds to wait for the target thread to reach a safe point. */
  pickupTimeoutSeconds: z.number().positive().max(600).default(10),
  backend: z.enum(['native', 'sys']).default('native'),
});
export type JobOptions = z.infer<typeof JobOptions>;

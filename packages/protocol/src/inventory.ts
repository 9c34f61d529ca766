import { z } from 'zod';
import { Labels } from './common';

export const ProcessThread = z.object({
  tid: z.number().int().positive(),
  main: z.boolean(),
});

/** One Python process as discovered by the engine on a host. */
export const PythonProcess = z.object({
  pid: z.number().int().positive(),
  nsPid: z.number().int().positive(),
  /** Process start time in clock ticks since boot (field 22 of /proc/PID/stat), as a decimal string. */
  startTime: z.string().regex(/^\d+$/),
  uid: z.number().int().nonnegative(),
  user: z.string().max(256).nullable(),
  exe: z.string().max(4096),
  cmdline: z.array(z.string().max(4096)).max(256),
  cwd: z.string().max(4096).nullable().optional(),
  pythonVersion: z.string().max(32).nullable(),
  freeThreaded: z.boolean().nullable(),
  remoteDebugEnabled: z.boolean().nullable(),
  inContainer: z.boolean(),
  container: z.string().max(256).nullable().optional(),
  threads: z.array(ProcessThread).max(4096),
  /** Why version/threads could not be read, when they could not. */
  inspectError: z.string().max(1024).nullable().optional(),
});
export type PythonProcess = z.infer<typeof PythonProcess>;

export const HostFacts = z.object({
  hostname: z.string().min(1).max(255),
  os: z.string().max(255),
  kernel: z.string().max(255),
  arch: z.string().max(64),
  agentVersion: z.string().max(64),
  labels: Labels,
  bootId: z.string().max(64).optional(),
});
export type HostFacts = z.infer<typeof HostFacts>;

export const MAX_PROCESSES_PER_HOST = 5000;

export const InventorySnapshot = z.object({
  host: HostFacts,
  processes: z.array(PythonProcess).max(MAX_PROCESSES_PER_HOST),
  scannedAt: z.string(),
});
export type InventorySnapshot = z.infer<typeof InventorySnapshot>;

export const InventoryDelta = z.object({
  upserted: z.array(PythonProcess).max(MAX_PROCESSES_PER_HOST),
  /** Processes gone since the last report, by pid + start time. */
  removed: z
    .array(z.object({ pid: z.number().int().positive(), startTime: z.string() }))
    .max(MAX_PROCESSES_PER_HOST),
  scannedAt: z.string(),
});
export type InventoryDelta = z.infer<typeof InventoryDelta>;

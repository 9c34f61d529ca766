/**
 * Enrolment on the first start, for agents that are started by an orchestrator rather than by an admin at
 * a shell (DaemonSet, compose, `docker run`): when the state directory holds no identity yet, `run` first
 * enrols with the join token from `joinTokenFile` (a mounted Secret; preferred) or PYREACH_AGENT_JOIN_TOKEN,
 * then runs. A state directory that already holds an identity (a rescheduled pod on the same node, whose
 * hostPath survived) is never re-enrolled and the token is not read.
 *
 * Why not `enroll --token "$TOKEN"` in a shell wrapper: with the host's pid namespace every process on the
 * node can read the agent's command line (/proc/PID/cmdline is world-readable), so a token passed as an
 * argument leaks to every local user during enrolment. A file or the environment (/proc/PID/environ is
 * readable only with ptrace rights over the agent, i.e. root) does not.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config';
import { enroll, EnrollError } from '../enroll';
import { readIdentity } from '../identity';

const MAX_TOKEN_BYTES = 4096;

export class BootstrapError extends Error {
  override name = 'BootstrapError';
}

/** The token in `path` (trimmed), at most 4 KiB. */
export function readTokenFile(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new BootstrapError(
      `join token file ${path}: cannot read (${(e as NodeJS.ErrnoException).code}); mount the join token Secret there or enrol with "pyreach-agent enroll"`,
    );
  }
  try {
    const buf = Buffer.alloc(MAX_TOKEN_BYTES + 1);
    let len = 0;
    for (let n; (n = readSync(fd, buf, len, buf.length - len, null)) > 0;) {
      len += n;
      if (len > MAX_TOKEN_BYTES)
        throw new BootstrapError(`join token file ${path}: larger than ${MAX_TOKEN_BYTES} bytes`);
    }
    const token = buf.subarray(0, len).toString('utf8').trim();
    if (!token) throw new BootstrapError(`join token file ${path} is empty`);
    return token;
  } finally {
    closeSync(fd);
  }
}

export type FirstStart = 'enrolled' | 'already enrolled' | 'no token';

/**
 * Enrol when not enrolled yet and a token is available. Throws BootstrapError (bad token file) or
 * EnrollError (the control plane refused or could not be reached) — the caller exits non-zero with it.
 */
export async function enrolOnFirstStart(
  config: AgentConfig,
  envToken: string | undefined,
  log?: Logger,
): Promise<FirstStart> {
  if (readIdentity(config.stateDir)) return 'already enrolled';
  const token = config.joinTokenFile ? readTokenFile(config.joinTokenFile) : envToken;
  if (!token) return 'no token';
  try {
    const id = await enroll(config, token);
    log?.info({ agentId: id.agentId, server: id.server }, 'enrolled on first start');
    return 'enrolled';
  } catch (e) {
    if (e instanceof EnrollError) throw new BootstrapError(`first-start enrolment failed: ${e.message}`);
    throw e;
  }
}

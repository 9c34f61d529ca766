import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostFacts } from './inventory';
import {
  type AgentLocalPolicy,
  type PreflightContent,
  type PreflightFacts,
  countVerdicts,
  preflightTarget,
} from './preflight';

const HASH = 'a'.repeat(64);
const policy = (over: Partial<AgentLocalPolicy> = {}): AgentLocalPolicy => ({
  allowedUsers: ['*'],
  allowRoot: false,
  allowCustomCode: true,
  maxCodeBytes: 1024,
  allowWake: false,
  library: [{ id: 'logging.set_level', codeHash: HASH }],
  ...over,
});
const facts = (over: Partial<PreflightFacts> = {}): PreflightFacts => ({
  process: { uid: 1000, user: 'app', remoteDebugEnabled: true, threads: [{ tid: 10 }, { tid: 11 }] },
  agent: { revoked: false, online: true, localPolicy: policy() },
  ...over,
});
const custom: PreflightContent = {
  kind: 'custom',
  scriptId: null,
  codeHash: 'b'.repeat(64),
  codeBytes: 10,
  wake: false,
};
const library: PreflightContent = {
  ...custom,
  kind: 'library',
  scriptId: 'logging.set_level',
  codeHash: HASH,
};
const codes = (r: { reasons: { code: string }[] }) => r.reasons.map((x) => x.code);

describe('preflightTarget', () => {
  it('ok when nothing known stands in the way', () => {
    assert.deepEqual(preflightTarget(facts(), custom), { verdict: 'ok', reasons: [] });
  });

  it('doomed: exited (not in the inventory), unknown or revoked agent, thread gone', () => {
    const gone = preflightTarget(facts({ process: null }), custom);
    assert.equal(gone.verdict, 'doomed');
    assert.deepEqual(codes(gone), ['PROCESS_EXITED']);
    assert.deepEqual(codes(preflightTarget(facts({ agent: null }), custom)), ['AGENT_REVOKED']);
    const never = preflightTarget(facts({ process: null, inventoryKnown: false }), custom);
    assert.deepEqual([never.verdict, ...codes(never)], ['warn', 'NO_INVENTORY']);
    const revoked = preflightTarget(
      facts({ agent: { revoked: true, online: true, localPolicy: null } }),
      custom,
    );
    assert.deepEqual([revoked.verdict, ...codes(revoked)], ['doomed', 'AGENT_REVOKED']);
    assert.deepEqual(codes(preflightTarget(facts({ tid: 99 }), custom)), ['THREAD_GONE']);
    assert.equal(preflightTarget(facts({ tid: 11 }), custom).verdict, 'ok');
  });

  it('remote debugging off is doomed; unreadable is a warning', () => {
    const off = facts({ process: { uid: 1000, user: 'app', remoteDebugEnabled: false, threads: [] } });
    assert.deepEqual(preflightTarget(off, custom).verdict, 'doomed');
    assert.match(preflightTarget(off, custom).reasons[0]!.message, /PYTHON_DISABLE_REMOTE_DEBUG/);
    const unknown = facts({ process: { uid: 1000, user: 'app', remoteDebugEnabled: null, threads: [] } });
    assert.deepEqual(
      [preflightTarget(unknown, custom).verdict, ...codes(preflightTarget(unknown, custom))],
      ['warn', 'REMOTE_DEBUG_UNKNOWN'],
    );
  });

  it('offline agent and an agent that does not report its policy are warnings', () => {
    const off = preflightTarget(
      facts({ agent: { revoked: false, online: false, localPolicy: policy() } }),
      custom,
    );
    assert.deepEqual([off.verdict, ...codes(off)], ['warn', 'AGENT_OFFLINE']);
    const old = preflightTarget(
      facts({ agent: { revoked: false, online: true, localPolicy: null } }),
      custom,
    );
    assert.deepEqual([old.verdict, ...codes(old)], ['warn', 'AGENT_POLICY_UNKNOWN']);
  });

  it("the agent's local policy: custom code, another script version, wake, size, root, users", () => {
    const lib = (over: Partial<AgentLocalPolicy>) =>
      facts({ agent: { revoked: false, online: true, localPolicy: policy(over) } });
    assert.deepEqual(codes(preflightTarget(lib({ allowCustomCode: false }), custom)), [
      'AGENT_POLICY_CUSTOM_CODE',
    ]);
    assert.equal(preflightTarget(lib({ allowCustomCode: false }), library).verdict, 'ok');
    assert.deepEqual(
      codes(preflightTarget(lib({ allowCustomCode: false }), { ...library, codeHash: 'c'.repeat(64) })),
      ['AGENT_POLICY_SCRIPT'],
    );
    assert.deepEqual(codes(preflightTarget(lib({ allowCustomCode: false, library: [] }), library)), [
      'AGENT_POLICY_SCRIPT',
    ]);
    assert.deepEqual(codes(preflightTarget(facts(), { ...custom, wake: true })), ['AGENT_POLICY_WAKE']);
    assert.equal(preflightTarget(lib({ allowWake: true }), { ...custom, wake: true }).verdict, 'ok');
    assert.deepEqual(codes(preflightTarget(facts(), { ...custom, codeBytes: 2048 })), [
      'AGENT_POLICY_CODE_SIZE',
    ]);
    const root = facts({ process: { uid: 0, user: 'root', remoteDebugEnabled: true, threads: [] } });
    assert.deepEqual(codes(preflightTarget(root, custom)), ['AGENT_POLICY_ROOT']);
    assert.deepEqual(codes(preflightTarget(lib({ allowedUsers: ['web', 1001] }), custom)), [
      'AGENT_POLICY_USER',
    ]);
    assert.equal(preflightTarget(lib({ allowedUsers: ['app'] }), custom).verdict, 'ok');
    assert.equal(preflightTarget(lib({ allowedUsers: ['1000'] }), custom).verdict, 'ok');
  });

  it('every thread blocked in C is a warning that says what --wake would do', () => {
    const blocked = (uninterruptible: boolean) =>
      facts({
        threadStates: {
          at: '2026-12-03T10:00:00.000Z',
          threads: [
            { tid: 10, name: 'main', status: 'blocked', syscall: 'epoll_wait', uninterruptible },
            { tid: 11, name: 'w', status: 'blocked', syscall: 'futex', uninterruptible },
          ],
        },
      });
    const r = preflightTarget(blocked(false), custom);
    assert.deepEqual([r.verdict, ...codes(r)], ['warn', 'THREADS_BLOCKED']);
    assert.match(r.reasons[0]!.message, /all 2 threads .*epoll_wait, futex.*with --wake .*does not allow it/);
    assert.deepEqual(codes(preflightTarget(blocked(true), custom)), ['THREADS_UNINTERRUPTIBLE']);
    const oneRunning = facts({
      threadStates: {
        at: 'x',
        threads: [
          { tid: 10, name: 'main', status: 'blocked', syscall: 'epoll_wait', uninterruptible: false },
          { tid: 11, name: 'w', status: 'running', syscall: null, uninterruptible: false },
        ],
      },
    });
    assert.equal(preflightTarget(oneRunning, custom).verdict, 'ok');
    assert.deepEqual(codes(preflightTarget({ ...oneRunning, tid: 10 }, custom)), ['THREADS_BLOCKED']);
    assert.match(
      preflightTarget({ ...oneRunning, tid: 10 }, custom).reasons[0]!.message,
      /^thread 10 was blocked/,
    );
    const single = facts({ threadStates: { at: 'x', threads: [oneRunning.threadStates!.threads[0]!] } });
    assert.match(preflightTarget(single, custom).reasons[0]!.message, /^its only thread was blocked in C/);
  });

  it('reasons add up; the worst decides; counts', () => {
    const r = preflightTarget(
      facts({
        process: { uid: 1000, user: 'app', remoteDebugEnabled: false, threads: [] },
        agent: { revoked: false, online: false, localPolicy: policy({ allowCustomCode: false }) },
      }),
      custom,
    );
    assert.deepEqual(
      [r.verdict, ...codes(r)],
      ['doomed', 'REMOTE_DEBUG_DISABLED', 'AGENT_OFFLINE', 'AGENT_POLICY_CUSTOM_CODE'],
    );
    assert.deepEqual(countVerdicts([{ verdict: 'ok' }, { verdict: 'doomed' }, { verdict: 'doomed' }]), {
      ok: 1,
      warn: 0,
      doomed: 2,
    });
  });
});

describe('HostFacts.localPolicy', () => {
  const base = { hostname: 'h', os: 'Linux', kernel: '6', arch: 'x64', agentVersion: '0.1.0', labels: {} };
  it('is optional (older agents still validate) and checked when present', () => {
    assert.equal(HostFacts.safeParse(base).success, true);
    assert.equal(HostFacts.safeParse({ ...base, localPolicy: policy() }).success, true);
    assert.equal(HostFacts.safeParse({ ...base, localPolicy: { allowCustomCode: 'yes' } }).success, false);
  });
});

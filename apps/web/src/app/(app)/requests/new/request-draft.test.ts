/**
 * The draft's targets are the chosen keys themselves (the picker pages the fleet on the server, so a choice need
 * not be on the page it shows): read back strictly, a key someone typed into ?targets= that is not one is dropped.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScriptSummary } from '@pyreach/protocol/api';
import { describeScript, getScript } from '@pyreach/scripts';
import { defaultsOf } from '../../../../components/schema-form';
import { draftErrors, emptyDraft, parseProcessKey, processKey, targetsOf } from './request-draft';

describe('request draft targets', () => {
  it('are the chosen keys, read back, without a process list', () => {
    const key = processKey({ agentId: 'agt_1', pid: 4242, startTime: '104242' });
    assert.deepEqual(parseProcessKey(key), { agentId: 'agt_1', pid: 4242, startTime: '104242' });
    assert.deepEqual(targetsOf(emptyDraft({ targets: [key, key, 'agt_2:7:1:2'] })), {
      type: 'processes',
      processes: [
        { agentId: 'agt_1', pid: 4242, startTime: '104242' },
        { agentId: 'agt_2', pid: 7, startTime: '1:2' },
      ],
    });
  });

  it('drop what is not a key, and name none when nothing is left', () => {
    for (const bad of ['', 'agt_1', 'agt_1:x:1', 'agt 1:1:1', 'a/../b:1:1', ':1:1', 'agt_1:1:'])
      assert.equal(parseProcessKey(bad), null, bad);
    assert.equal(targetsOf(emptyDraft({ targets: ['nope', 'agt_1:-1:1'] })), null);
  });

  it('aim at the thread only while exactly one process is chosen', () => {
    const one = emptyDraft({ targets: ['agt_1:1:1'], tid: 9 });
    assert.deepEqual(targetsOf(one), {
      type: 'processes',
      processes: [{ agentId: 'agt_1', pid: 1, startTime: '1', tid: 9 }],
    });
    const two = emptyDraft({ targets: ['agt_1:1:1', 'agt_1:2:1'], tid: 9 });
    const t = targetsOf(two);
    assert.ok(t && t.type === 'processes' && t.processes.every((p) => !('tid' in p)));
  });
});

describe('request draft errors', () => {
  // The form lists the library's first script (logging.set_level, whose level has no default) even in custom
  // mode: its parameters must not block filing custom code (they did, silently: the errors are not shown there).
  const setLevel = ScriptSummary.parse(describeScript(getScript('logging.set_level')!));
  const base = {
    ...emptyDraft({ targets: ['agt_1:1:1'], scriptId: setLevel.id }),
    params: defaultsOf(setLevel.paramsSchema),
    reason: 'INC-1: why',
  };

  it('custom code is not held back by the parameters of a script it does not run', () => {
    const d = { ...base, codeMode: 'custom' as const, custom: 'print(1)' };
    const e = draftErrors(d, targetsOf(d), setLevel);
    assert.deepEqual(e, { targets: null, code: null, reason: null, params: {} });
  });

  it('a library script with a required parameter left empty names it', () => {
    const d = { ...base, codeMode: 'library' as const };
    const e = draftErrors(d, targetsOf(d), setLevel);
    assert.equal(e.code, 'Fix the parameters');
    assert.ok(e.params.level, JSON.stringify(e.params));
  });
});

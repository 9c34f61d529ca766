/**
 * What reaches the container images. No Docker engine runs on these machines, so the build is checked the way
 * the engine would read it: the build context through .dockerignore (with the same matcher docker's own
 * clients use), and the final stage's COPY lines of the web image.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import dockerignore from '@balena/dockerignore';
import { REPO_ROOT } from '../support/python';

const ignore = dockerignore({ ignorecase: false }).add(
  readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8'),
);
const inContext = (path: string): boolean => !ignore.ignores(path);

/** Every file that `docker build .` would send from this checkout as it is now (tracked or not). */
function contextFiles(dir = REPO_ROOT, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, e.name);
    const rel = relative(REPO_ROOT, full);
    if (!inContext(e.isDirectory() ? `${rel}/` : rel) || !inContext(rel)) continue;
    if (e.isDirectory()) contextFiles(full, out);
    else out.push(rel);
  }
  return out;
}

describe('image build context (.dockerignore)', () => {
  const secrets = [
    '.env',
    '.env.production',
    'apps/web/.env.local',
    'data/demo/pglite/PG_VERSION',
    'data/demo/keys/signing.pem',
    'data/demo/auth-secret',
    'apps/web/data/pglite/base/1',
    'var/lib/pyreach/keys/signing.pem',
    'signing.pem',
    'agent-state/agent.key',
    'agent-state/identity.json',
    'node_modules/next/package.json',
    'apps/web/.next/BUILD_ID',
    'apps/agent/dist/pyreach-agent.mjs',
    '.git/config',
    'server.log',
  ];
  for (const path of secrets) {
    it(`keeps ${path} out of the build context`, () => {
      assert.equal(inContext(path), false);
    });
  }

  it('keeps what the builds need', () => {
    for (const path of [
      'package.json',
      'package-lock.json',
      'apps/web/server.ts',
      'apps/web/src/server/env.ts',
      'packages/db/src/index.ts',
      'prisma/schema.prisma',
      'prisma/migrations/20261123000100_auth/migration.sql',
      'apps/agent/build.mjs',
      '.env.example',
    ])
      assert.equal(inContext(path), true, path);
  });

  it('sends no key, secret, database or environment file from this very checkout', () => {
    const bad = contextFiles().filter((f) =>
      /(^|\/)(\.env(\..*)?|auth-secret|identity\.json)$|\.(pem|key)$|(^|\/)(data|keys|node_modules|\.next)\//.test(
        f,
      ),
    );
    assert.deepEqual(
      bad.filter((f) => !f.endsWith('.env.example')),
      [],
    );
  });
});

describe('web image final stage', () => {
  const dockerfile = readFileSync(join(REPO_ROOT, 'apps/web/Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const final = stages.at(-1)!;

  it('copies only what runs, never the whole build tree', () => {
    const copies = final
      .split('\n')
      .filter((l) => /^COPY /.test(l))
      .map((l) => l.trim().split(/\s+/));
    assert.ok(copies.length > 0);
    const allowed =
      /^\/src\/(package\.json|package-lock\.json|tsconfig\.base\.json|prisma\.config\.ts|node_modules|prisma|packages\/(protocol|db|scripts)|apps\/web\/(package\.json|server\.ts|next\.config\.ts|tsconfig\.json|src|\.next|scripts\/migrate\.ts))$/;
    for (const words of copies) {
      assert.equal(
        words[1],
        '--from=build',
        `final stage copies from the build stage only: ${words.join(' ')}`,
      );
      for (const src of words.slice(2, -1)) assert.match(src, allowed, `unexpected source ${src}`);
    }
  });

  it('drops the Next.js build cache and runs as a non-root user', () => {
    assert.match(stages[0]!, /rm -rf apps\/web\/\.next\/cache/);
    assert.match(final, /^USER pyreach$/m);
  });
});

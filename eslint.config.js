// Lint: typescript-eslint's recommended rules plus the dependency direction of ARCHITECTURE.md.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import tseslint from 'typescript-eslint';

const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
});

// ---- the import graph: acyclic, and no database client in what Next.js bundles -----------------------------
//
// A small reader of import statements (no plugin to install, runs offline, one pass over the tree per lint run).
// Edges are relative imports and the workspace's own @pyreach/* packages (through their package.json exports).
// `import type` / `export type` are types only; every other import loads the module at run time.

const ROOT = path.dirname(fileURLToPath(import.meta.url));
const GRAPH_ROOTS = ['apps/web/src', 'packages/protocol/src'];
const IMPORT_RE =
  /^\s*(?:import|export)\s+(type\s+)?(?:[\w*\s{},$]*?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm;

function sourceFiles(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) sourceFiles(p, out);
    else if (/\.tsx?$/.test(e.name) && !/\.(test|spec)\.tsx?$/.test(e.name)) out.push(p);
  }
  return out;
}

const workspaceExports = new Map();
function resolveWorkspace(spec) {
  const m = /^@pyreach\/([^/]+)(\/.*)?$/.exec(spec);
  if (!m) return null;
  const dir = path.join(ROOT, 'packages', m[1]);
  if (!workspaceExports.has(dir)) {
    const pkg = path.join(dir, 'package.json');
    workspaceExports.set(
      dir,
      fs.existsSync(pkg) ? (JSON.parse(fs.readFileSync(pkg, 'utf8')).exports ?? {}) : {},
    );
  }
  const target = workspaceExports.get(dir)[`.${m[2] ?? ''}`];
  return typeof target === 'string' ? path.join(dir, target) : null;
}

function resolveImport(spec, from) {
  if (spec.startsWith('.')) {
    const base = path.resolve(path.dirname(from), spec);
    for (const c of [
      base,
      `${base}.ts`,
      `${base}.tsx`,
      path.join(base, 'index.ts'),
      path.join(base, 'index.tsx'),
    ])
      if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
    return null;
  }
  return resolveWorkspace(spec) ?? `pkg:${spec}`;
}

let graphCache = null;
function importGraph() {
  if (graphCache) return graphCache;
  const edges = new Map();
  const visit = (file) => {
    if (edges.has(file) || file.startsWith('pkg:')) return;
    const out = [];
    edges.set(file, out);
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT_RE)) {
      const spec = m[2] ?? m[3];
      const to = resolveImport(spec, file);
      if (!to) continue;
      out.push({ to, typeOnly: Boolean(m[1]) });
      if (!to.startsWith('pkg:')) visit(to);
    }
  };
  for (const r of GRAPH_ROOTS) for (const f of sourceFiles(path.join(ROOT, r))) visit(f);
  // Strongly connected components (Tarjan): a file in a component of more than one file is in a cycle.
  const inCycle = new Map();
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of edges.get(v) ?? []) {
      if (to.startsWith('pkg:') || !edges.has(to)) continue;
      if (!idx.has(to)) {
        strong(to);
        low.set(v, Math.min(low.get(v), low.get(to)));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v), idx.get(to)));
    }
    if (low.get(v) === idx.get(v)) {
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      const self = (edges.get(v) ?? []).some((e) => e.to === v);
      if (comp.length > 1 || self) for (const f of comp) inCycle.set(f, comp);
    }
  };
  for (const v of edges.keys()) if (!idx.has(v)) strong(v);
  graphCache = { edges, inCycle };
  return graphCache;
}

const rel = (f) => (f.startsWith('pkg:') ? f.slice(4) : path.relative(ROOT, f));

/** The chain of run-time imports from `file` to a module `forbidden` matches, or null. */
function runtimePathTo(file, forbidden) {
  const { edges } = importGraph();
  const seen = new Set([file]);
  const queue = [[file]];
  while (queue.length) {
    const chain = queue.shift();
    for (const { to, typeOnly } of edges.get(chain.at(-1)) ?? []) {
      if (typeOnly || seen.has(to)) continue;
      seen.add(to);
      const next = [...chain, to];
      if (forbidden(to)) return next;
      if (!to.startsWith('pkg:')) queue.push(next);
    }
  }
  return null;
}

const DATABASE = (f) =>
  /^pkg:(@prisma\/|prisma$|pg$|@electric-sql\/)/.test(f) || f.startsWith(path.join(ROOT, 'packages/db/'));

const graphPlugin = {
  rules: {
    'no-import-cycle': {
      meta: { type: 'problem', schema: [] },
      create(context) {
        return {
          Program(node) {
            const comp = importGraph().inCycle.get(context.filename);
            if (comp)
              context.report({
                node,
                message: `import cycle: ${comp.map(rel).sort().join(' ↔ ')} (ARCHITECTURE.md: one direction)`,
              });
          },
        };
      },
    },
    'no-database-in-bundle': {
      meta: { type: 'problem', schema: [] },
      create(context) {
        return {
          Program(node) {
            if (!importGraph().edges.has(context.filename)) return;
            const chain = runtimePathTo(context.filename, DATABASE);
            if (chain)
              context.report({
                node,
                message: `Next.js bundles this module on its own, and it reaches the database client: ${chain
                  .map(rel)
                  .join(' → ')} (reach the services through httpPlane(); import types only)`,
              });
          },
        };
      },
    },
  },
};

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      '**/dist/**',
      '**/.next/**',
      '**/.turbo/**',
      'data/**',
      'packages/db/src/generated/**',
      '**/next-env.d.ts',
    ],
  },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // Tests read JSON results of known shape; typing every probe would add noise, not safety.
  {
    files: ['**/*.test.ts', '**/*.spec.ts', 'test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  // Packages never import apps; the agent never touches the database or the web app.
  {
    files: ['packages/**/*.ts', 'packages/**/*.tsx'],
    rules: restrict(
      ['@pyreach/web*', '@pyreach/agent*', '**/apps/**'],
      'packages never import apps (ARCHITECTURE.md)',
    ),
  },
  {
    files: ['packages/protocol/**/*.ts'],
    rules: restrict(['@pyreach/*', '!@pyreach/protocol*'], 'protocol imports zod only'),
  },
  {
    files: ['packages/remote-exec/**/*.ts'],
    rules: restrict(
      ['@pyreach/db*', '@pyreach/scripts*', '@pyreach/web*', '@pyreach/agent*'],
      'the engine imports protocol types and node builtins only',
    ),
  },
  {
    files: ['apps/agent/**/*.ts'],
    rules: restrict(
      ['@pyreach/db*', '@pyreach/web*', '@prisma/*', '**/apps/web/**'],
      'the agent never touches the database or the control plane',
    ),
  },
  {
    files: ['apps/web/**/*.ts', 'apps/web/**/*.tsx'],
    rules: restrict(
      ['@prisma/client*', '@pyreach/remote-exec*', '@pyreach/agent*'],
      'the control plane uses @pyreach/db, never @prisma/client or the engine',
    ),
  },
  // The control plane's spine (docs/architecture.md): one direction, no cycle, and nothing Next.js bundles
  // (routes, pages, the browser's code) may reach the database client; routes hold no Prisma calls.
  {
    files: ['apps/web/src/**/*.ts', 'apps/web/src/**/*.tsx', 'packages/protocol/src/**/*.ts'],
    ignores: ['**/*.test.ts'],
    plugins: { pyreach: graphPlugin },
    rules: { 'pyreach/no-import-cycle': 'error' },
  },
  {
    files: [
      'apps/web/src/app/**/*.ts',
      'apps/web/src/app/**/*.tsx',
      'apps/web/src/lib/**/*.ts',
      'apps/web/src/lib/**/*.tsx',
      'apps/web/src/components/**/*.tsx',
    ],
    plugins: { pyreach: graphPlugin },
    rules: {
      'pyreach/no-database-in-bundle': 'error',
      ...restrict(
        [
          '@pyreach/db*',
          '@prisma/*',
          '@pyreach/remote-exec*',
          '@pyreach/agent*',
          '**/server/services/*',
          '**/server/control-plane',
        ],
        'route modules, pages and the browser reach the services through httpPlane() (http/plane.ts), never directly',
      ),
      'no-restricted-syntax': [
        'error',
        {
          selector: "MemberExpression[property.name='prisma']",
          message: 'no database client under app/: make one service call (services/index.ts)',
        },
      ],
    },
  },
  // The browser's code imports nothing of the server (its shapes come from protocol).
  {
    files: ['apps/web/src/lib/**/*.ts', 'apps/web/src/lib/**/*.tsx', 'apps/web/src/components/**/*.tsx'],
    rules: restrict(
      ['@pyreach/db*', '@prisma/*', '@pyreach/remote-exec*', '@pyreach/agent*', '**/server/**'],
      'the browser imports protocol shapes, never the server',
    ),
  },
);

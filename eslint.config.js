// Lint: typescript-eslint's recommended rules plus the dependency direction of ARCHITECTURE.md.
import tseslint from 'typescript-eslint';

const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
});

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
);

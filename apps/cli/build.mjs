// Single-file bundle: node dist/pyreach.mjs — what an operator copies to a laptop or a CI runner. It needs
// only Node (no tsx, no workspace), and starts about three times faster than bin/pyreach.mjs, which runs the
// TypeScript sources through tsx for development.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const outfile = new URL('./dist/pyreach.mjs', import.meta.url).pathname;
await build({
  entryPoints: [new URL('./src/cli.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: false,
  legalComments: 'none',
  // ws's optional native add-ons (socket.io-client's transport); it falls back to JS without them.
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __pyreachCreateRequire } from 'node:module'; const require = __pyreachCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
console.log(`built ${outfile}`);

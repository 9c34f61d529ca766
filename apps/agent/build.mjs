// Single-file bundle: node dist/pyreach-agent.mjs. Internal packages are TS source (exports maps), so
// esbuild compiles them in; ws's optional native add-ons are left out (it falls back to JS).
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

const outfile = new URL('./dist/pyreach-agent.mjs', import.meta.url).pathname;
await build({
  entryPoints: [new URL('./src/cli.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  external: ['bufferutil', 'utf-8-validate'],
  banner: {
    // CommonJS dependencies (pino, ws) call require(); give the ESM bundle one.
    js: "import { createRequire as __pyreachCreateRequire } from 'node:module'; const require = __pyreachCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
console.log(`built ${outfile}`);

// Single-file bundle: node dist/pyreach-agent.mjs. Internal packages are TS source (exports maps), so
// esbuild compiles them in; ws's optional native add-ons are left out (it falls back to JS).
// The one native file the agent needs is koffi's (the engine's openat/unlinkat/flock FFI, fsat.ts): it cannot be
// inlined, so it is copied beside the bundle as dist/koffi.node and `koffi` is aliased to a loader that
// requires exactly that file (relative to the bundle itself, never from a search path). The image and the
// systemd install ship the two files together.
import { build } from 'esbuild';
import { chmodSync, copyFileSync, existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/** koffi's prebuilt binary for this platform (glibc: the agent's images and hosts are glibc). */
function koffiBinary() {
  const req = createRequire(new URL('../../package.json', import.meta.url));
  const triplet = `${process.platform}-${process.arch}`;
  const pkg = dirname(req.resolve(`@koromix/koffi-${triplet}/package.json`));
  const dir = readdirSync(pkg).find((d) => d.startsWith(`${process.platform}_`));
  const file = dir && join(pkg, dir, 'koffi.node');
  if (!file || !existsSync(file)) throw new Error(`no koffi binary for ${triplet} in ${pkg}`);
  return file;
}

const KOFFI_LOADER = `
import { createRequire } from 'node:module';
const req = createRequire(import.meta.url);
// Beside the bundle (dist/koffi.node, /usr/local/lib/pyreach/koffi.node in the image).
const native = req(new URL('./koffi.node', import.meta.url).pathname);
if (typeof native?.load !== 'function') throw new Error('koffi.node beside the agent is not koffi');
export default native;
`;

const koffiAlias = {
  name: 'koffi-beside-bundle',
  setup(b) {
    b.onResolve({ filter: /^koffi$/ }, () => ({ path: 'koffi', namespace: 'pyreach-koffi' }));
    b.onLoad({ filter: /.*/, namespace: 'pyreach-koffi' }, () => ({ contents: KOFFI_LOADER, loader: 'js' }));
  },
};

// `node build.mjs [DIR]`: into DIR instead of dist/ (the tests build a private copy per test process).
const outfile = process.argv[2]
  ? join(process.argv[2], 'pyreach-agent.mjs')
  : new URL('./dist/pyreach-agent.mjs', import.meta.url).pathname;
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
  plugins: [koffiAlias],
  banner: {
    // CommonJS dependencies (pino, ws) call require(); give the ESM bundle one.
    js: "import { createRequire as __pyreachCreateRequire } from 'node:module'; const require = __pyreachCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
copyFileSync(koffiBinary(), join(dirname(outfile), 'koffi.node'));
chmodSync(join(dirname(outfile), 'koffi.node'), 0o644);
console.log(`built ${outfile} (+ koffi.node)`);

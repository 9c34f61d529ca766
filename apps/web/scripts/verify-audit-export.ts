/**
 * Verifies an audit export offline, without the control plane or its database:
 *
 *   npx tsx apps/web/scripts/verify-audit-export.ts pyreach-audit-….jsonl audit-public.pem [more.pem …]
 *
 * The key files are the audit checkpoint key's public half (SPKI PEM; the private key file works too, but keep
 * it on the control plane). Exits 0 when the export is intact and signed by one of the keys, 1 when it is not
 * (the reason on stderr), 2 on usage errors. Prints the result as JSON on stdout.
 */
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { verifyAuditExport } from '@pyreach/protocol/audit';

async function main(): Promise<number> {
  const [file, ...keyFiles] = process.argv.slice(2);
  if (!file || keyFiles.length === 0) {
    process.stderr.write('usage: verify-audit-export <export.jsonl> <public-key.pem> [more keys…]\n');
    return 2;
  }
  const keys = await Promise.all(keyFiles.map(async (k) => createPublicKey(await readFile(k, 'utf8'))));
  const result = verifyAuditExport(await readFile(file, 'utf8'), keys);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  if (!result.valid) {
    process.stderr.write(`audit export NOT verified: ${result.reason}\n`);
    return 1;
  }
  if (!result.complete)
    process.stderr.write(
      'note: a filtered export — each event matches its hash, but only an unfiltered export proves nothing was removed\n',
    );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`verify failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);

/**
 * What the benchmarks share. Each writes its own section of docs/benchmarks.md: it owns one `## <heading>`
 * section, replaced in place (up to the next `## `), or appended when the document has none yet.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS_DOC = fileURLToPath(new URL('../docs/benchmarks.md', import.meta.url));

/** Puts `section` (which starts with its own `## heading` line) in place of that section of the document. */
export async function writeSection(section: string, file: string = BENCHMARKS_DOC): Promise<void> {
  const heading = section.split('\n', 1)[0]!;
  if (!heading.startsWith('## '))
    throw new Error(`a benchmark section starts with its "## " heading: ${heading}`);
  const doc = await readFile(file, 'utf8').catch(() => '# Benchmarks\n');
  const start = doc.startsWith(`${heading}\n`) ? 0 : doc.indexOf(`\n${heading}\n`) + 1;
  const body = section.trimEnd() + '\n';
  if (start <= 0 && !doc.startsWith(`${heading}\n`)) {
    await writeFile(file, `${doc.trimEnd()}\n\n${body}`);
    return;
  }
  const end = doc.indexOf('\n## ', start + heading.length);
  await writeFile(file, doc.slice(0, start) + body + (end >= 0 ? doc.slice(end) : ''));
}

/** The wall times (ms, sorted) of `runs` calls of `fn`, after one warm-up call (plan cache, connections). */
export async function samples(fn: () => Promise<unknown>, runs: number): Promise<number[]> {
  await fn();
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b);
}

/** The median of `samples(fn, runs)`. */
export async function medianTime(runs: number, fn: () => Promise<unknown>): Promise<number> {
  const times = await samples(fn, runs);
  return times[Math.floor(times.length / 2)]!;
}

/** Host labels as people type them: `key=value` pairs separated by commas. The one reading and writing of it. */
import { Labels } from '@pyreach/protocol/common';

export type LabelsParse = { labels: Labels; error: null } | { labels: Labels; error: string };

/** Reads `env=prod, team=orders`; names the first pair that is not key=value or not a valid label. */
export function parseLabels(text: string): LabelsParse {
  const labels: Labels = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) return { labels, error: `"${part}" is not key=value` };
    labels[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  const checked = Labels.safeParse(labels);
  if (!checked.success) return { labels, error: checked.error.issues[0]?.message ?? 'invalid labels' };
  return { labels: checked.data, error: null };
}

export function formatLabels(labels: Labels, separator = ','): string {
  return Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(separator);
}

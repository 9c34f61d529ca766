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

/** Policy labels per namespace as people type them: `payments: env=prod; sandbox: env=dev,team=x`. */
export type NamespaceLabelsParse =
  | { namespaceLabels: Record<string, Labels>; error: null }
  | { namespaceLabels: Record<string, Labels>; error: string };

/** Reads `ns: key=value,…; ns2: …`; names the first part that is not `namespace: labels`. */
export function parseNamespaceLabels(text: string): NamespaceLabelsParse {
  const namespaceLabels: Record<string, Labels> = {};
  for (const part of text
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const i = part.indexOf(':');
    const ns = i > 0 ? part.slice(0, i).trim() : '';
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns))
      return { namespaceLabels, error: `"${part}" is not namespace: key=value` };
    const labels = parseLabels(part.slice(i + 1));
    if (labels.error) return { namespaceLabels, error: `${ns}: ${labels.error}` };
    if (Object.keys(labels.labels).length === 0)
      return { namespaceLabels, error: `${ns}: declare at least one label` };
    namespaceLabels[ns] = labels.labels;
  }
  return { namespaceLabels, error: null };
}

export function formatNamespaceLabels(n: Record<string, Labels>): string {
  return Object.entries(n)
    .map(([ns, labels]) => `${ns}: ${formatLabels(labels)}`)
    .join('; ');
}

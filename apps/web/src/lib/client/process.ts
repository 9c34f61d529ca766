/**
 * How the dashboard names a Python process for a person: the script or module it runs, read from its argv,
 * before pids and interpreter paths. Pure functions (unit-tested in process.test.ts).
 */
import type { FleetProcess } from '@pyreach/protocol/api';

/** Interpreter options that take a value (`-X dev`, `-W error`); `-c` and `-m` are handled on their own. */
const WITH_VALUE = new Set(['-X', '-W', '--check-hash-based-pycs']);

const isPython = (arg0: string) => /(^|\/)python[0-9.]*(-[\w.]+)?$/.test(arg0) || /(^|\/)pypy/.test(arg0);

/** The last `keep` segments of a path (`/srv/app/demo/service.py` → `demo/service.py`). */
export function tailPath(path: string, keep = 2): string {
  const parts = path.split('/').filter(Boolean);
  return parts.length <= keep ? path.replace(/^\/+/, '') || path : parts.slice(-keep).join('/');
}

/**
 * What the process runs: `python -m pkg` → `pkg`; `python [opts] dir/app.py` → `dir/app.py`; `python -c …` →
 * `python -c`; a renamed or console-script process (argv[0] not an interpreter) → argv[0]'s last segment.
 * Null when argv says nothing (a bare interpreter, an empty argv).
 */
export function scriptOf(cmdline: readonly string[]): string | null {
  const [arg0, ...rest] = cmdline;
  if (arg0 === undefined || arg0 === '') return null;
  if (!isPython(arg0)) return tailPath(arg0, 1);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '-m') return rest[i + 1] ?? null;
    if (a.startsWith('-m') && a.length > 2) return a.slice(2);
    if (a === '-c' || (a.startsWith('-c') && a.length > 2)) return 'python -c';
    if (a === '--') return rest[i + 1] ? tailPath(rest[i + 1]!) : null;
    if (WITH_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return tailPath(a);
  }
  return null;
}

type Named = Pick<FleetProcess, 'cmdline' | 'exe' | 'container' | 'inContainer' | 'pid'> & {
  containerIdentity?: FleetProcess['containerIdentity'];
};

/** Where the process runs, when that is a container: `namespace/pod · container`, else the short label. */
export function containerOf(p: Named): string | null {
  const pod = p.containerIdentity?.pod;
  if (pod) return `${pod.namespace}/${pod.name}${pod.containerName ? ` · ${pod.containerName}` : ''}`;
  return p.inContainer ? (p.container ?? 'container') : null;
}

/** The pod's owning workload as `Kind/name` (`Deployment/checkout`), when the agent could learn it. */
export function workloadOf(p: Pick<Named, 'containerIdentity'>): string | null {
  const w = p.containerIdentity?.pod?.workload;
  return w ? `${w.kind}/${w.name}` : null;
}

/** The name to show first: the script or module, else the container or pod, else the executable's name. */
export function processName(p: Named): string {
  return scriptOf(p.cmdline) ?? containerOf(p) ?? (tailPath(p.exe, 1) || `pid ${p.pid}`);
}

/** Shortens in the middle, keeping both ends (`/usr/lib/…/service.py --port 8080`); `max` ≥ 5 characters. */
export function middleEllipsis(text: string, max: number): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  const keep = Math.max(max - 1, 4);
  const head = Math.ceil(keep * 0.45);
  return `${chars.slice(0, head).join('')}…${chars.slice(chars.length - (keep - head)).join('')}`;
}

/** "1 host", "2 hosts"; `many` for irregular plurals. */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en')} ${n === 1 ? one : many}`;
}

/**
 * Real cgroups for tests: no container runtime runs on these machines, so tests that need a process "in a
 * container" create the cgroups a runtime would (same names, on this machine's real hierarchies, as root)
 * and move a real process into them. Everything created is removed by `cleanup()` (children first).
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Mount point of the first hierarchy of `fstype` (cgroup2, or cgroup v1 with `option` among its options). */
export function cgroupMount(fstype: 'cgroup' | 'cgroup2', option?: string): string {
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [type, , superOpts] = post.split(' ');
    if (type !== fstype) continue;
    if (option && !(superOpts ?? '').split(',').includes(option)) continue;
    return pre.split(' ')[4]!;
  }
  throw new Error(
    `no ${fstype}${option ? ` (${option})` : ''} hierarchy is mounted: this test needs a writable cgroup filesystem (root)`,
  );
}

export class Cgroups {
  private readonly made: string[] = [];
  private readonly moved = new Map<number, Set<string>>();

  /** Create `rel` (and its parents) below `root`; returns its path. */
  make(root: string, rel: string): string {
    let p = root;
    for (const part of rel.split('/')) {
      p = join(p, part);
      if (!existsSync(p)) {
        mkdirSync(p);
        this.made.push(p);
      }
    }
    return p;
  }

  /** Move `pid` into the cgroup at `path` (of the hierarchy mounted at `root`). */
  move(root: string, path: string, pid: number): void {
    writeFileSync(join(path, 'cgroup.procs'), `${pid}\n`);
    if (!this.moved.has(pid)) this.moved.set(pid, new Set());
    this.moved.get(pid)!.add(root);
  }

  /** Move every moved process back to its hierarchy's root, then remove the cgroups made, children first. */
  cleanup(): void {
    for (const [pid, roots] of this.moved)
      for (const root of roots) {
        try {
          writeFileSync(join(root, 'cgroup.procs'), `${pid}\n`);
        } catch {
          /* exited */
        }
      }
    for (const p of this.made.reverse()) {
      try {
        rmdirSync(p);
      } catch {
        /* still busy or already gone */
      }
    }
    this.made.length = 0;
  }
}

/**
 * Small fsync'd file primitives. Everything the agent must not lose (seen job ids, job journals, the audit log,
 * identity) goes through here: data is on disk before the function returns.
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';

export function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    /* some filesystems refuse fsync on directories; the file itself was synced */
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

export function ensureDir(dir: string, mode = 0o700): void {
  mkdirSync(dir, { recursive: true, mode });
  chmodSync(dir, mode);
}

/** Write a whole file atomically: temp file, fsync, rename, fsync of the directory. */
export function writeFileDurable(path: string, data: string | Buffer, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
}

function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/**
 * An append-only file kept open; each append is one write of whole lines followed by fsync. A crash can leave
 * at most a torn last line, which readers skip (it was never acknowledged to anyone).
 */
export class AppendLog {
  private fd: number;
  private created: boolean;

  constructor(
    readonly path: string,
    mode = 0o600,
  ) {
    const existed = existsSync(path);
    if (existed) repairTornTail(path);
    this.fd = openSync(path, 'a', mode);
    this.created = !existed;
    chmodSync(path, mode);
  }

  appendLines(lines: string[]): void {
    if (lines.length === 0) return;
    writeAll(this.fd, Buffer.from(lines.map((l) => l + '\n').join(''), 'utf8'));
    fsyncSync(this.fd);
    if (this.created) {
      fsyncDir(dirname(this.path));
      this.created = false;
    }
  }

  append(value: unknown): void {
    this.appendLines([JSON.stringify(value)]);
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

/** Cut a torn last line (a crash in the middle of an append) so the next append starts on a fresh line. */
export function repairTornTail(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    if (last[0] === 0x0a) return;
    // Walk back to the previous newline.
    const chunk = Buffer.alloc(64 * 1024);
    let end = size;
    while (end > 0) {
      const start = Math.max(0, end - chunk.length);
      const n = readSync(fd, chunk, 0, end - start, start);
      const i = chunk.subarray(0, n).lastIndexOf(0x0a);
      if (i >= 0) {
        ftruncateSync(fd, start + i + 1);
        fsyncSync(fd);
        return;
      }
      end = start;
    }
    ftruncateSync(fd, 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Parse JSON Lines, skipping a torn (unparseable) last line and reporting any other bad line. */
export function parseJsonLines<T = unknown>(text: string): { items: T[]; torn: boolean; bad: number } {
  const lines = text.split('\n');
  const items: T[] = [];
  let torn = false;
  let bad = 0;
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    try {
      items.push(JSON.parse(line) as T);
    } catch {
      if (i === lines.length - 1) torn = true;
      else bad++;
    }
  });
  return { items, torn, bad };
}

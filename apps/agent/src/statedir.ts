/**
 * The agent's own state stays its own. The state directory holds the private key, the pinned control-plane
 * key (identity.json), the replay guard and the journals; the agent runs as root and trusts what it finds
 * there. So before it uses any of it, it checks that nobody else could have put it there or can change it:
 *
 * - every directory above the state directory is owned by root or the agent's uid and is not writable by
 *   group or others (unless sticky, like /tmp: there others cannot rename or remove what is not theirs), and
 *   no symbolic link on the way belongs to another user — otherwise the state directory could be swapped;
 * - the state directory itself is a real directory (never a link: the agent makes it itself), owned by the
 *   agent's uid and not writable by group or others — then nobody else can plant a link or file inside it;
 * - identity.json and agent.pub (tampering matters there: they pin keys) and agent.key (secrecy too) are
 *   regular files, not links, owned by the agent's uid, not writable by group or others; the key file is not
 *   readable by them either.
 *
 * Each refusal names the file and the command that fixes it.
 */
import { lstatSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';

export class StateDirError extends Error {
  override name = 'StateDirError';
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new StateDirError(`cannot inspect ${path}: ${(e as Error).message}`);
  }
}

/** Every prefix of an absolute path: /a/b/c → /, /a, /a/b, /a/b/c. */
function prefixes(abs: string): string[] {
  const parts = abs.split(sep).filter(Boolean);
  const out: string[] = [sep];
  for (let i = 0; i < parts.length; i++) out.push(sep + parts.slice(0, i + 1).join(sep));
  return out;
}

/** Directories above the state directory: nobody but root and the agent may replace what lies below them. */
export function checkParents(stateDir: string, uid: number): void {
  const abs = resolve(stateDir);
  // Links on the way as written: only root's or the agent's own (e.g. /var/run -> /run).
  for (const p of prefixes(dirname(abs))) {
    const st = lstatOrNull(p);
    if (!st) break;
    if (st.isSymbolicLink() && st.uid !== 0 && st.uid !== uid)
      throw new StateDirError(
        `${p} (on the way to the state directory ${abs}) is a symbolic link to ${readlinkSync(p)} owned by uid ${st.uid}, not by root or the agent (uid ${uid}): whoever owns it decides where the state directory is; replace it with a directory owned by root, or choose another --state-dir`,
      );
  }
  let real: string;
  try {
    real = realpathSync(dirname(abs));
  } catch {
    return; // not there yet: created by the agent (mkdir) below an existing, checked prefix
  }
  for (const p of prefixes(real)) {
    const st = lstatSync(p);
    if (st.uid !== 0 && st.uid !== uid)
      throw new StateDirError(
        `${p} (a parent of the state directory ${abs}) is owned by uid ${st.uid}, not by root or the agent (uid ${uid}), so that user could replace the state directory: run "chown root ${p}" or choose another --state-dir`,
      );
    if (st.mode & 0o022 && !(st.mode & 0o1000))
      throw new StateDirError(
        `${p} (a parent of the state directory ${abs}) is writable by group or others (mode ${octal(st.mode)}) without the sticky bit, so they could replace the state directory: run "chmod go-w ${p}" or choose another --state-dir`,
      );
  }
}

/** The state directory itself (when it exists). */
export function checkStateDirItself(stateDir: string, uid: number): void {
  const abs = resolve(stateDir);
  const st = lstatOrNull(abs);
  if (!st) return;
  if (st.isSymbolicLink())
    throw new StateDirError(
      `the state directory ${abs} is a symbolic link (to ${readlinkSync(abs)}); the agent only uses a directory it made itself: remove the link and run "mkdir -m 700 ${abs}" (then enrol again), or point --state-dir at the real directory after checking who made the link`,
    );
  if (!st.isDirectory()) throw new StateDirError(`the state directory ${abs} is not a directory`);
  if (st.uid !== uid)
    throw new StateDirError(
      `the state directory ${abs} is owned by uid ${st.uid}, not by the agent's uid ${uid}: another user could have changed what is in it; check its contents, then run "chown -R ${uid} ${abs}"`,
    );
  if (st.mode & 0o022)
    throw new StateDirError(
      `the state directory ${abs} is writable by group or others (mode ${octal(st.mode)}): they could replace its files; run "chmod 700 ${abs}"`,
    );
}

/** One file of the state directory: a regular file of the agent's, not writable (or, `secret`, readable) by others. */
export function checkStateFile(path: string, uid: number, what: string, secret: boolean): boolean {
  const st = lstatOrNull(path);
  if (!st) return false;
  if (st.isSymbolicLink())
    throw new StateDirError(
      `${what} ${path} is a symbolic link (to ${readlinkSync(path)}); the agent writes this file itself and never follows a link there: remove it and enrol again`,
    );
  if (!st.isFile()) throw new StateDirError(`${what} ${path} is not a regular file`);
  if (st.uid !== uid)
    throw new StateDirError(
      `${what} ${path} is owned by uid ${st.uid}, not by the agent's uid ${uid}: check it was not tampered with, then run "chown ${uid} ${path}"`,
    );
  if (secret && st.mode & 0o077)
    throw new StateDirError(
      `${what} ${path} has mode ${octal(st.mode)}; it must not be readable or writable by group or others: run "chmod 600 ${path}"`,
    );
  if (st.mode & 0o022)
    throw new StateDirError(
      `${what} ${path} is writable by group or others (mode ${octal(st.mode)}): they could replace what it pins; run "chmod 600 ${path}"`,
    );
  return true;
}

export function agentUid(): number {
  return process.getuid?.() ?? 0;
}

/** Everything above for one state directory and the identity files in it. */
export function checkState(
  stateDir: string,
  files: { identity: string; privateKey: string; publicKey: string },
  uid = agentUid(),
): void {
  checkParents(stateDir, uid);
  checkStateDirItself(stateDir, uid);
  checkStateFile(join(stateDir, files.identity), uid, 'the identity file', false);
  checkStateFile(join(stateDir, files.publicKey), uid, 'the public key file', false);
  checkStateFile(join(stateDir, files.privateKey), uid, 'the private key file', true);
}

/**
 * Where the CLI finds the control plane and its token: PYREACH_URL + PYREACH_TOKEN, else what `pyreach login`
 * stored under $XDG_CONFIG_HOME/pyreach (default ~/.config/pyreach): `token` (mode 0600; a token file that
 * group or others can read is refused, like ssh refuses such a key) and `url`.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export class UsageError extends Error {}

export function configDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'pyreach');
}

export function readTokenFile(file: string): string {
  const st = statSync(file);
  if ((st.mode & 0o077) !== 0)
    throw new UsageError(
      `${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); run: chmod 600 ${file}`,
    );
  return readFileSync(file, 'utf8').trim();
}

export function resolveTarget(env: NodeJS.ProcessEnv): { url: string; token: string } {
  const dir = configDir(env);
  const url =
    env.PYREACH_URL || (existsSync(join(dir, 'url')) ? readFileSync(join(dir, 'url'), 'utf8').trim() : '');
  if (!url) throw new UsageError('set PYREACH_URL or run `pyreach login --url URL`');
  const tokenFile = join(dir, 'token');
  const token = env.PYREACH_TOKEN || (existsSync(tokenFile) ? readTokenFile(tokenFile) : '');
  if (!token) throw new UsageError('set PYREACH_TOKEN or run `pyreach login` (token from an admin)');
  return { url, token };
}

/** Stores the token (0600, in a 0700 directory, written then renamed so it is never briefly readable). */
export function storeLogin(env: NodeJS.ProcessEnv, url: string, token: string): string {
  const dir = configDir(env);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = join(dir, `.token.${process.pid}`);
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, join(dir, 'token'));
  writeFileSync(join(dir, 'url'), `${url}\n`, { mode: 0o600 });
  return join(dir, 'token');
}

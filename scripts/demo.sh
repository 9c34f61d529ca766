#!/usr/bin/env bash
# `npm run demo`: the whole system on the embedded database, from a fresh clone.
# This wrapper makes sure dependencies and a CPython 3.14 exist, then hands over to scripts/demo.ts, which
# starts and supervises everything (Ctrl-C stops all of it).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -d node_modules/.bin ]] || [[ ! -e node_modules/.bin/tsx ]]; then
  echo "demo: installing dependencies (npm install; engine warnings of Prisma's optional dev tooling are expected on Node 20)"
  npm install --no-audit --no-fund --loglevel=error
elif [[ ! -e packages/db/src/generated/client.ts ]]; then
  npm run --silent db:generate
fi

find_python() {
  if [[ -n "${PYREACH_PYTHON:-}" ]]; then
    [[ -x "$PYREACH_PYTHON" ]] || { echo "demo: PYREACH_PYTHON=$PYREACH_PYTHON is not an executable" >&2; return 1; }
    echo "$PYREACH_PYTHON"; return 0
  fi
  local candidate
  for candidate in python3.14 python3.15 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 14) and hasattr(sys, "remote_exec") else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  if [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    echo "demo: no CPython 3.14 on PATH; provisioning a private copy from Debian's archive (cached)" >&2
    bash scripts/provision-python.sh | tail -n 1; return 0
  fi
  cat >&2 <<'MSG'
demo: Pyreach's demo service needs CPython 3.14 or newer, and none was found.
  Install one, then run `npm run demo` again:
    - Debian/Ubuntu (as root): this script provisions a private copy automatically;
    - macOS/other Linux: `pyenv install 3.14` or the python.org installer, or your distribution's python3.14;
  or point PYREACH_PYTHON at an existing python3.14 binary.
MSG
  return 1
}

PYREACH_PYTHON="$(find_python)"
export PYREACH_PYTHON
exec node --import tsx scripts/demo.ts "$@"

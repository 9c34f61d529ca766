#!/usr/bin/env bash
# The whole test suite (`npm test`): lint, types, every workspace's unit and integration tests, browser tests.
# Real parts only: CPython 3.14 targets, PostgreSQL, Chromium. Missing system parts are installed by
# scripts/bootstrap.sh (CI runs it first); a missing part fails the run, it never skips.
set -euo pipefail
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1 NEXT_TELEMETRY_DISABLED=1

if [[ -z "${PYREACH_PYTHON:-}" && -f scripts/provision-python.sh ]]; then
  PYREACH_PYTHON="$(bash scripts/provision-python.sh | tail -n 1)"
  export PYREACH_PYTHON
fi

echo "== lint"
npx eslint . --max-warnings=0
echo "== format (prettier --check; \`npm run format\` fixes)"
npx prettier --check . --log-level=warn
echo "== typecheck (root scripts and benchmarks)"
npx tsc -p tsconfig.json
echo "== typecheck (every workspace, two at a time: tsc only reads)"
npx turbo run typecheck --concurrency=2 --continue --env-mode=loose --output-logs=errors-only
# Next's build need not type-check the dashboard again (apps/web/next.config.ts).
export PYREACH_BUILD_TYPECHECKED=1
echo "== tests (every workspace, one workspace at a time: each runs its own files in parallel where they allow)"
# The output is also kept so that a failure is repeated at the end, where a CI excerpt (the log's tail) shows it.
tests_log="$(mktemp)"
trap 'rm -f "$tests_log"' EXIT
tests_status=0
npx turbo run test --concurrency=1 --continue --env-mode=loose --output-logs=full --log-order=stream 2>&1 |
  tee "$tests_log" || tests_status=$?
if ((tests_status != 0)); then
  echo "== failed tests (repeated from each workspace's report above)"
  # node's spec reporter ends each run with "✖ failing tests:" and one block per failure, each line prefixed by
  # turbo with its task's name; print those blocks without the stack frames.
  awk '/failing tests:/ { on = 1; task = $1 } on && $1 != task { on = 0 } on && $2 != "at" { print }' "$tests_log" |
    head -n 150
  grep -E 'ERROR +command .* exited' "$tests_log" || true
  exit "$tests_status"
fi
echo "== browser tests (Playwright in Debian's Chromium against the real server, agent and CPython 3.14)"
npm run --silent -w test test:e2e

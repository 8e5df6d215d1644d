#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what it needs, lint, type-check, test.
# Exit status is non-zero on any failure, and when pytest collects no test (its exit 5).
#
# Python packages come only from a virtualenv this script makes (.venv-test/, or
# $ROLLOUTCTL_TEST_VENV) with nothing in it but what pyproject.toml declares, so a package
# installed by hand on this machine can never satisfy an import. It is made anew when
# pyproject.toml or the Python changes, and on every run under CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# System packages the tests start for real: Debian's Chromium (tests/report/), Prometheus with
# promtool and VictoriaMetrics (tests/metrics/test_prometheus.py), PostgreSQL for the Unleash
# server (tests/flags/conftest.py). Installed here as root when missing; if that fails their
# tests skip on a developer's machine and fail when CI is set.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
{ command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
# Debian's postgresql does not put initdb on PATH: look where its versioned binaries live.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt_log="$(mktemp)"
  if ! { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}"; \
  } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    echo "could not install ${missing[*]}: their tests will fail under CI" >&2
  fi
  rm -f "$apt_log"
fi
# The real Unleash server of tests/flags/: unleash-server 7.5.1 (the last release that runs on
# Node 20) from npm, once, into a cache outside the repository, where the fixture looks for it
# (~30 s). Only its run-time dependencies; its telemetry postinstall script is not needed.
unleash_dir="${ROLLOUTCTL_TEST_CACHE:-$HOME/.cache/rolloutctl-tests}/unleash-7.5.1"
if [ ! -f "$unleash_dir/node_modules/unleash-server/dist/server.js" ] && command -v npm >/dev/null
then
  mkdir -p "$unleash_dir"
  npm_log="$(mktemp)"
  if ! (
    cd "$unleash_dir" \
      && echo '{"name":"unleash-test-server","private":true}' >package.json \
      && npm install --no-audit --no-fund --omit=dev unleash-server@7.5.1
  ) >"$npm_log" 2>&1; then
    tail -n 20 "$npm_log" >&2
    echo "could not install unleash-server@7.5.1: its tests will fail under CI" >&2
  fi
  rm -f "$npm_log"
fi
venv="${ROLLOUTCTL_TEST_VENV:-.venv-test}"
stamp="$( { "$PY" -c 'import sys; print(sys.version)'; cat pyproject.toml; } | sha256sum)"
if [ -n "${CI:-}" ] || [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]
then
  echo "making a fresh virtualenv in $venv" >&2
  "$PY" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --quiet --disable-pip-version-check -e ".[test]"
  echo "$stamp" >"$venv/.stamp"
fi
PY="$venv/bin/python"
"$PY" -m ruff check rolloutctl tests benchmarks
"$PY" -m ruff format --check rolloutctl tests benchmarks
"$PY" -m mypy
run_pytest() {
  set +e
  "$PY" -m pytest -p no:cacheprovider "$@"
  status=$?
  set -e
  if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
  fi
  [ "$status" -eq 0 ] || exit "$status"
}
run_pytest "$@"
# The CLI's state scenarios again with the PostgreSQL state store (the suite above ran them
# on the folder store), unless the caller chose what to run.
if [ "$#" -eq 0 ]; then
  run_pytest --state-backend postgres tests/cli/test_rollout.py tests/cli/test_controls.py \
    tests/cli/test_ci_outputs.py tests/cli/test_shared_state.py tests/test_notify.py
fi

#!/usr/bin/env bash
# The whole test suite on a fresh machine: install what it needs, lint, type-check, test.
# Exit status is non-zero on any failure, and when pytest collects no test (its exit 5).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# The report tests (tests/report/) drive Debian's Chromium. Installed here as root when missing;
# if that fails they skip on a developer's machine and fail when CI is set.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt_log="$(mktemp)"
  if ! { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
  } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    echo "chromium could not be installed: the browser tests will fail under CI" >&2
  fi
  rm -f "$apt_log"
fi
# The prometheus source's tests (tests/metrics/test_prometheus.py) start Debian's Prometheus and
# VictoriaMetrics. Installed here as root when missing; if that fails they skip on a developer's
# machine and fail when CI is set.
if { ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null \
  || ! command -v victoria-metrics >/dev/null; } && [ "$(id -u)" -eq 0 ] \
  && command -v apt-get >/dev/null; then
  apt_log="$(mktemp)"
  if ! { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus victoria-metrics; \
  } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    echo "prometheus / victoria-metrics could not be installed: their tests will fail under CI" >&2
  fi
  rm -f "$apt_log"
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
"$PY" -m ruff check rolloutctl tests benchmarks
"$PY" -m ruff format --check rolloutctl tests benchmarks
"$PY" -m mypy
set +e
"$PY" -m pytest -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"

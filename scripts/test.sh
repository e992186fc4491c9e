#!/usr/bin/env bash
# Install devicecloud with its test tools into .venv, then lint, type-check and run every test.
source "$(dirname "$0")/common.sh"
if command -v apt-get >/dev/null; then
  apt_install mosquitto mosquitto-clients redis-server  # real brokers and clients for the tests
  apt_install prometheus  # a real Prometheus scrapes /metrics; promtool checks deploy/prometheus
  apt_install pebble  # an ACME test server: certificates are obtained and renewed against it
  apt_install haproxy  # the TCP load balancer in front of several instances (deploy/haproxy)
  apt_install chromium fonts-wqy-microhei  # headless Chromium (Playwright), with CJK glyphs
  # node and npm run the ESP-AI platform's own Node.js examples (a node of any origin will do)
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
fi
if [ ! -d tests/espai_node/node_modules ] && command -v npm >/dev/null; then
  (cd tests/espai_node && npm ci --no-audit --no-fund --loglevel=error)
fi
ensure_venv test
.venv/bin/ruff check src tests
.venv/bin/mypy
.venv/bin/python -m pytest "$@"

# The same suite again with every server on PostgreSQL, when one is reachable.
postgres=${DEVICECLOUD_TEST_POSTGRES:-postgresql://$(id -un)@127.0.0.1:5432/postgres}
if .venv/bin/python -c 'import sys, psycopg; psycopg.connect(sys.argv[1], connect_timeout=3).close()' \
    "$postgres" 2>/dev/null; then
  echo "== the whole suite again on PostgreSQL ($postgres)"
  DEVICECLOUD_TEST_POSTGRES=$postgres .venv/bin/python -m pytest "$@"
elif [ "${CI:-}" = true ]; then
  echo "CI=true: PostgreSQL is not reachable at $postgres; the PostgreSQL run cannot be skipped" >&2
  exit 1
else
  echo "SKIPPED: the PostgreSQL run (no PostgreSQL at $postgres; set DEVICECLOUD_TEST_POSTGRES)" >&2
fi

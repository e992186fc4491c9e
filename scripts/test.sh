#!/usr/bin/env bash
# Install devicecloud with its test tools into .venv, then lint, type-check and run every test.
source "$(dirname "$0")/common.sh"
if command -v apt-get >/dev/null; then
  apt_install mosquitto mosquitto-clients redis-server  # real brokers and clients for the tests
fi
ensure_venv test
.venv/bin/ruff check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

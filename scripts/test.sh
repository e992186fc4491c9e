#!/usr/bin/env bash
# Install devicecloud with its test tools into .venv, then lint, type-check and run every test.
source "$(dirname "$0")/common.sh"
ensure_venv test
.venv/bin/ruff check src tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"

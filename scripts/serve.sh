#!/usr/bin/env bash
# Install devicecloud into .venv and run it on the embedded defaults (flags pass through).
source "$(dirname "$0")/common.sh"
ensure_venv serve
exec .venv/bin/devicecloud serve "$@"

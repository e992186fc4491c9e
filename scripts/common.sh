# Shared by scripts/serve.sh and scripts/test.sh: a virtualenv in .venv with the package installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {  # apt_install PACKAGE... : install the Debian packages that are missing
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

python_ok() { "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

ensure_venv() {  # ensure_venv EXTRAS : .venv with devicecloud[EXTRAS] installed (editable)
  local python=${PYTHON:-python3}
  if ! python_ok "$python"; then
    command -v apt-get >/dev/null && apt_install python3 python3-venv python3-pip
    python_ok "$python" || { echo "devicecloud needs Python 3.11 or newer with venv" >&2; exit 1; }
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -m pip install -q -e ".[$1]" 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c 'import devicecloud' || { echo "installing devicecloud failed" >&2; exit 1; }
}

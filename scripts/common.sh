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

installed() { .venv/bin/python -c 'import devicecloud' 2>/dev/null; }

# ensure_venv EXTRAS : .venv with devicecloud[EXTRAS] installed (editable). pip runs only when
# pyproject.toml changed since the last install that worked (a stamp in .venv keeps its hash);
# if it fails (offline) while an installed devicecloud remains, one line says so and that one runs.
ensure_venv() {
  local python=${PYTHON:-python3}
  if ! python_ok "$python"; then
    command -v apt-get >/dev/null && apt_install python3 python3-venv python3-pip
    python_ok "$python" || { echo "devicecloud needs Python 3.11 or newer with venv" >&2; exit 1; }
  fi
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  local stamp=".venv/devicecloud-$1.stamp" log=.venv/pip.log wanted
  wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] && installed; then
    return
  fi
  if { .venv/bin/python -m pip install -q --upgrade pip &&
       .venv/bin/python -m pip install -q -e ".[$1]"; } >"$log" 2>&1; then
    echo "$wanted" >"$stamp"
  elif installed; then
    echo "pip could not install devicecloud[$1] (offline?): running the one installed" \
         "(pip's output: $log)" >&2
  else
    cat "$log" >&2
    echo "installing devicecloud failed" >&2
    exit 1
  fi
}

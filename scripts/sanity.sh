#!/usr/bin/env bash
# ansible-test sanity on the files git tracks, as they are in the working tree.
# ansible-test needs the tree at ansible_collections/jumpstarter/lab, so it runs on a copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ansible-test bootstraps pip in its venvs with a script from a host we cannot reach;
# this stand-in does the same with ensurepip and PyPI.
cache=~/.ansible/test/cache
pip_version=24.2  # what ansible-core 2.19 (requirements/dev.txt) bootstraps
mkdir -p "$cache"
cat > "$cache/get_pip_${pip_version//./_}.py" <<'PY'
# Stand-in for pip's get-pip.py: ensurepip, then the requested pip from PyPI.
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
PY

target="$work/ansible_collections/jumpstarter/lab"
mkdir -p "$target"
cd "$root"
git ls-files -z | xargs -0 -I{} cp --parents -P {} "$target" 2>/dev/null || true
cd "$target"
git init -q && git add -A
"$venv/bin/ansible-test" sanity --python 3.11 --requirements "$@"

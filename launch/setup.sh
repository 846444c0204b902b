# Sourced by launch/quickstart.sh and launch/test.sh: makes sure ./.venv exists and holds this
# checkout installed with the given extras (default: test), then activates it. Re-installs
# only when setup.cfg / pyproject.toml change (a stamp inside .venv records their hash).
# PYTHON=python3.11 picks the interpreter (Python 3.11 is what the project is tested on).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${ARGEN_EXTRAS:-test}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
HASH="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | "$PY" -c \
  'import hashlib, sys; print(hashlib.sha1(sys.stdin.buffer.read()).hexdigest()[:12])')"
STAMP="$ROOT/.venv/.argen_installed_${EXTRAS//,/_}_$HASH"
if [ ! -f "$STAMP" ]; then
  echo "setting up $ROOT/.venv (pip install -e '.[$EXTRAS]'; about a minute)" >&2
  [ -x "$ROOT/.venv/bin/python" ] || "$PY" -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  rm -f "$ROOT"/.venv/.argen_installed_*
  touch "$STAMP"
fi
# shellcheck disable=SC1091
. "$ROOT/.venv/bin/activate"
cd "$ROOT"

#!/usr/bin/env bash
# The test suite on a fresh machine: set up ./.venv if needed, then run pytest on 2 workers.
# Extra arguments go to pytest, e.g. `bash launch/test.sh tests/test_train.py`.
set -euo pipefail
ARGEN_EXTRAS=test . "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
python -m pytest -q -n 2 "$@"

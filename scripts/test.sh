#!/usr/bin/env bash
# The one test command (README and .ci/run both call it): install everything, then run the suite.
# torch is pinned first so the CPU wheel on local disk is used, never a multi-GB CUDA download.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0 || exit $?
python -m pip install -q -e ".[all]" || exit $?
python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"

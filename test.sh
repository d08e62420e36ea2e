#!/usr/bin/env bash
# Run the whole test suite: sets up .venv (and Chromium for browser tests) the first time.
# Tests run on pytest-xdist workers, one per core up to 4 (PROBELENS_TEST_WORKERS overrides;
# `./test.sh -n 0 ...` runs in one process, for a debugger or a single test).
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh --browser
workers="${PROBELENS_TEST_WORKERS:-$(.venv/bin/python -c 'import os; print(min(4, len(os.sched_getaffinity(0))))')}"
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup "$@"

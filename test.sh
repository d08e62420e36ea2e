#!/usr/bin/env bash
# Run the whole test suite: sets up .venv (and Chromium for browser tests) the first time.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh --browser
exec .venv/bin/python -m pytest "$@"

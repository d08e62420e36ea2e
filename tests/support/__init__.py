"""Helpers shared by test modules: import them as `tests.support.<module>`.

Test modules never import from each other; what two of them need lives here. Pytest
fixtures built on these helpers are in tests/conftest.py and tests/e2e/conftest.py.

- `apptest`: Streamlit AppTest on a real SQLite file (environment, users, sign-in).
- `capitals`: the labelled "capital cities" answers, seeding them and a retrain run.
- `browser`: the app served in a subprocess, Debian's Chromium, sign-in with Playwright.
"""

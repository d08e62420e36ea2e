"""Security tests drive the real app: the browser fixtures are shared with tests/e2e."""
from tests.support.browser_fixtures import chromium, page  # noqa: F401

"""The habits that keep the code easy to carry on: layers, lint, file size, one settings module.

These run in the suite (and so in CI): a change that breaks a layer or adds an import
cycle fails here with import-linter's own explanation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from core.base import settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MAX_LINES = 600
SOURCE_SUFFIXES = {".py", ".js", ".css"}


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _imported_modules(path: Path) -> set[str]:
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_app_py_keeps_the_pages_contract():
    """app.py is a top-level script, which import-linter (grimp) cannot take as a root package
    (NotATopLevelModule): the contract "no page imports db" is checked here for it, at any depth."""
    imported = _imported_modules(ROOT / "app.py")
    assert "pages.common" in imported  # the check reads the real imports
    storage = sorted(m for m in imported if m == "db" or m.startswith("db."))
    assert not storage, f"app.py imports {storage}: go through core.orchestration.actions"
    assert "sqlalchemy" not in {m.split(".")[0] for m in imported}, "app.py runs no SQL of its own"


def test_ruff_finds_nothing():
    result = _run(str(BIN / "ruff"), "check", ".", "--output-format", "concise")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_type_checker_is_clean():
    """mypy on core/ and db/ (settings in pyproject.toml [tool.mypy]): no errors."""
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_the_code_is_formatted():
    result = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, "run `.venv/bin/ruff format .`: " + result.stdout[-4000:] + result.stderr[-2000:]


def _project_files() -> list[Path]:
    tracked = _run("git", "ls-files", "--cached", "--others", "--exclude-standard").stdout.split()
    return [ROOT / f for f in tracked if (ROOT / f).exists()]


def test_no_source_file_is_a_monolith():
    too_long = []
    for path in _project_files():
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix not in SOURCE_SUFFIXES or rel.startswith(("tests/", "db/migrations/versions/")):
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        if lines > MAX_LINES:
            too_long.append(f"{rel}: {lines} lines")
    assert not too_long, "split these by job: " + "; ".join(too_long)


def test_the_environment_is_read_in_one_module():
    readers = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[")
    offenders = []
    for path in _project_files():
        rel = path.relative_to(ROOT).as_posix()
        if path.suffix != ".py" or rel.startswith(("tests/", "benchmarks/")) or rel == "core/base/settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if readers.search(line):
                offenders.append(f"{rel}:{n}")
    assert not offenders, "read settings through core.base.settings: " + ", ".join(offenders)


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in settings.ENV_VARS if f"`{name}`" not in readme]
    assert not missing, f"README does not list {missing}"

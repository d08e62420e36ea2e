"""Issue #22, finding 8 and the minor CLI one: a `datasets` folder reads only the files it may.

`state.json` (`_data_files`) and `dataset_dict.json` (`splits`) name files that
`datasets.load_from_disk` opened as written, so `../..` read a file outside the import root, and
the size limit measured the folder's own tree instead of what is read. A deeply nested
`dataset_info.json` gave a traceback on the CLI. Real folders written by `save_to_disk`, a real
SQLite file, the real CLI entry point.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from core.base.errors import UserError
from core.orchestration.cli import main

SECRET = "The vault code is 4711."


def save(folder: Path, answers: list[str]) -> Path:
    import datasets

    data = {"prompt": [f"Question {i}?" for i in range(len(answers))], "answer": answers}
    datasets.Dataset.from_dict(data).save_to_disk(str(folder))
    return folder


def data_file(folder: Path) -> str:
    return json.loads((folder / "state.json").read_text())["_data_files"][0]["filename"]


def point_state_at(folder: Path, name: str) -> None:
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": name}]
    (folder / "state.json").write_text(json.dumps(state))


@pytest.fixture()
def import_root(tmp_path, monkeypatch):
    """PROBELENS_IMPORT_ROOT = tmp_path/imports with a good folder; a secret dataset outside it."""
    root = tmp_path / "imports"
    root.mkdir()
    save(root / "good", ["Alpha.", "Beta."])
    save(tmp_path / "secret", [SECRET])
    monkeypatch.setenv("PROBELENS_IMPORT_ROOT", str(root))
    return root


def refused(typed: str, sqlite_db) -> UserError:
    """Preview and import both refuse `typed` with the same message; nothing is stored."""
    from core.orchestration.imports import import_file, preview_import
    from core.text.formats import ServerPath

    with pytest.raises(UserError) as preview_error:
        preview_import(ServerPath(typed), split="train")
    with sqlite_db.sessions() as session, session.begin(), pytest.raises(UserError) as import_error:
        import_file(session, ServerPath(typed), dataset="stolen", actor=None)
    assert str(preview_error.value) == str(import_error.value)
    assert SECRET not in str(preview_error.value)
    with sqlite_db.sessions() as session:
        from sqlalchemy import func, select

        from db.models import Generation

        assert session.scalar(select(func.count()).select_from(Generation)) == 0
    return preview_error.value


def test_a_good_folder_still_imports(import_root, sqlite_db):
    from core.orchestration.imports import preview_import
    from core.text.formats import ServerPath

    assert preview_import(ServerPath("good")).records == 2


def test_state_json_naming_a_file_outside_the_root_is_refused(import_root, tmp_path, sqlite_db):
    evil = save(import_root / "evil", ["Gamma."])
    outside = tmp_path / "secret" / data_file(tmp_path / "secret")
    for name in (f"../../secret/{outside.name}", str(outside), f"sub/../../../secret/{outside.name}"):
        point_state_at(evil, name)
        assert "may only name files inside itself" in str(refused("evil", sqlite_db)), name


def test_dataset_dict_splits_outside_the_root_are_refused(import_root, tmp_path, sqlite_db):
    import datasets

    evil = import_root / "evil-dict"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"prompt": ["a?"], "answer": ["A."]})}).save_to_disk(
        str(evil)
    )
    (evil / "dataset_dict.json").write_text(json.dumps({"splits": ["../../secret"]}))
    assert "may only name files inside itself" in str(refused("evil-dict", sqlite_db))


def test_the_size_limit_counts_the_files_that_will_be_read(import_root, sqlite_db, monkeypatch):
    """A folder whose data sits behind a link to another folder inside the root: the folder's
    own tree is a few KB, what it reads is not."""
    big = save(import_root / "big", ["x" * 400_000])
    small = import_root / "small"
    save(small, ["tiny."])
    (small / "link").symlink_to(big, target_is_directory=True)
    point_state_at(small, f"link/{data_file(big)}")
    monkeypatch.setenv("PROBELENS_MAX_IMPORT_MB", "0.1")
    assert "over the import limit" in str(refused("small", sqlite_db))


def test_a_deeply_nested_dataset_info_is_one_line_and_exit_2_on_the_cli(tmp_path, monkeypatch, capsys):
    db_path = tmp_path / "cli.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_path}")
    folder = save(tmp_path / "deep", ["Alpha."])
    (folder / "dataset_info.json").write_text("[" * 100_000 + "]" * 100_000)
    capsys.readouterr()  # save_to_disk's progress bar
    code = main(["--quiet", "import", str(folder), "--dataset", "deep"])
    _out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "nested too deeply" in err, err
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 0


def test_the_cli_refuses_a_folder_naming_files_outside_itself(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    save(tmp_path / "secret", [SECRET])
    evil = save(tmp_path / "evil", ["Gamma."])
    point_state_at(evil, f"../secret/{data_file(tmp_path / 'secret')}")
    code = main(["--quiet", "import", str(evil), "--dataset", "evil"])
    _out, err = capsys.readouterr()
    assert code == 2 and "may only name files inside itself" in err and SECRET not in err

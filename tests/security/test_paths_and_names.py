"""Issue #12, findings 2 and 4: nothing user-named becomes a path component, and a path typed
into the app is read only inside PROBELENS_IMPORT_ROOT.

Real SQLite databases, real files under tmp_path; the Data page is driven with AppTest.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.base.errors import UserError
from core.text.filenames import MAX_SLUG_LENGTH, file_slug
from tests.support.apptest import add_users, sign_in

SLUG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
HOSTILE_ANNOTATOR = "x/../../../escaped"  # written straight into the table: older rows may hold slashes


def records(n: int = 3, answer: str = "Lviv was founded in 1256.") -> bytes:
    rows = [
        {
            "id": f"g{i}",
            "conversation": [
                {"role": "user", "content": f"Who founded Lviv? ({i})"},
                {"role": "assistant", "content": answer},
            ],
            "annotations": [{"span": "1256", "index": answer.find("1256"), "label": "Not Supported"}],
        }
        for i in range(n)
    ]
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def count_generations(database) -> int:
    from db.models import Generation

    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Generation))


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


# --- the slug ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        HOSTILE_ANNOTATOR,
        "..",
        ".",
        "...",
        "",
        None,
        "/",
        "/etc/passwd",
        "..\\..\\windows",
        ".bashrc",
        "-rf",
        "a" * 500,
        "東京",
        "Kraków ds",
        "CON",
        "nul.txt",
        "a\x00b",
        "line\nbreak",
        "../" * 40,
        "~/x",
        "a..b",
    ],
)
def test_file_slug_is_one_safe_path_component(text):
    slug = file_slug(text)
    assert SLUG.match(slug), slug
    assert ".." not in slug and "/" not in slug and "\\" not in slug
    assert 1 <= len(slug) <= MAX_SLUG_LENGTH
    assert slug.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL"}
    assert Path(slug).name == slug and len(Path(slug).parts) == 1


def test_file_slug_keeps_plain_names_and_falls_back():
    assert file_slug("lviv-gold_2.jsonl") == "lviv-gold_2.jsonl"
    assert file_slug("Kraków") == "Krakow"
    assert file_slug("東京", fallback="dataset") == "dataset"
    assert file_slug("..", fallback="../../x") == "x"  # a fallback is slugged too
    assert len(file_slug("b" * 300, max_length=10)) == 10


# --- downloads ------------------------------------------------------------------------------------


@pytest.fixture()
def hostile_dataset(sqlite_db):
    """Dataset 'lviv' (3 answers with gold) and an annotator whose stored name holds slashes."""
    from core.orchestration.imports import import_file
    from db.models import User

    with sqlite_db.sessions() as session, session.begin():
        import_file(session, records(), dataset="lviv", actor=None, source_name="lviv.jsonl")
        session.add(User(name=HOSTILE_ANNOTATOR, name_key=None, password_hash="-", role="annotator"))
    return sqlite_db


@pytest.mark.parametrize("fmt", ["jsonl", "conll", "parquet", "datasets"])
def test_hostile_annotator_export_writes_only_inside_its_temporary_folder(hostile_dataset, tmp_path, monkeypatch, fmt):
    import core.orchestration.downloads as downloads

    scratch = tmp_path / "scratch" / "deep"
    scratch.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    targets: list[Path] = []
    real_export = downloads.export_file

    def spy(session, dataset, target, **kwargs):
        targets.append(Path(target))
        return real_export(session, dataset, target, **kwargs)

    monkeypatch.setattr(downloads, "export_file", spy)
    before = files_under(tmp_path)
    with hostile_dataset.sessions() as session:
        content, name, _mime, count = downloads.export_bytes(
            session, "lviv", format=fmt, which="annotator", annotator=HOSTILE_ANNOTATOR
        )
    assert count == 3 and content
    assert SLUG.match(name) and ".." not in name, name
    assert name.startswith("lviv-annotator-x_") and "escaped" in name
    (target,) = targets
    assert target.parent.parent == scratch and target.name in {"export", f"export.{fmt}"}  # a fixed name
    # nothing was created anywhere (the temporary folder is gone; the database files are not new)
    assert {p for p in files_under(tmp_path) if not p.name.startswith("probelens.db")} == {
        p for p in before if not p.name.startswith("probelens.db")
    }
    assert not (tmp_path / "escaped.jsonl").exists() and not list(tmp_path.rglob("*escaped*"))
    if fmt == "datasets":
        import io
        import zipfile

        names = zipfile.ZipFile(io.BytesIO(content)).namelist()
        assert names and all(n.startswith(name.removesuffix(".zip") + "/") and ".." not in n for n in names)


def test_download_names_are_slugs_for_any_dataset_name(sqlite_db):
    from core.orchestration.downloads import download_name

    assert download_name("lviv", "gold") == "lviv-gold"
    for dataset in ("../../etc", "/abs/path", ".hidden", "東京", "a" * 400):
        name = download_name(dataset, "annotator", "../../ann")
        assert SLUG.match(name) and ".." not in name and len(name) <= 120, name


def test_the_data_page_offers_the_slugged_file_name(app_database):
    from core.orchestration.imports import import_file
    from db.models import User

    add_users(app_database, ("boss", "boss-password", "admin"))
    with app_database.sessions() as session, session.begin():
        import_file(session, records(), dataset="lviv", actor=None, source_name="lviv.jsonl")
        session.add(User(name=HOSTILE_ANNOTATOR, name_key=None, password_hash="-", role="annotator"))
    at = sign_in("boss", "boss-password", "pages/data.py")
    at.selectbox(key="exp-dataset").set_value("lviv")
    at.selectbox(key="exp-which").set_value("annotator").run()
    at.selectbox(key="exp-who").set_value(HOSTILE_ANNOTATOR)
    at.selectbox(key="exp-format").set_value("jsonl").run()
    next(b for b in at.button if b.label.startswith("Prepare the file")).click().run()
    assert not at.exception, at.exception
    _wanted, _content, file_name, _mime, count = at.session_state["exp-ready"]
    assert count == 3 and SLUG.match(file_name) and "/" not in file_name and ".." not in file_name
    assert file_name == "lviv-annotator-x_._._._escaped.jsonl"


# --- the import root ------------------------------------------------------------------------------

SECRET_HEADER = "TOPSECRET_COLUMN"
SECRET_VALUE = "TOPSECRET_VALUE"


@pytest.fixture()
def import_root(tmp_path, monkeypatch):
    """PROBELENS_IMPORT_ROOT = tmp_path/imports (with one good file); secrets beside it, outside."""
    root = tmp_path / "imports"
    root.mkdir()
    (root / "good.jsonl").write_bytes(records())
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "secret.csv").write_text(f"{SECRET_HEADER},other\n{SECRET_VALUE},x\n", encoding="utf-8")
    (secret / "data.jsonl").write_bytes(records(answer=f"{SECRET_VALUE} was founded in 1256."))
    (root / "link.csv").symlink_to(secret / "secret.csv")
    (root / "linked-folder").symlink_to(secret, target_is_directory=True)
    folder = root / "dataset-with-link"
    folder.mkdir()
    (folder / "state.json").symlink_to(secret / "secret.csv")
    monkeypatch.setenv("PROBELENS_IMPORT_ROOT", str(root))
    return root


def outside_paths(tmp_path: Path) -> list[str]:
    secret = tmp_path / "secret"
    return [
        "../secret/secret.csv",
        "../secret",
        str(secret / "secret.csv"),
        str(secret / "missing.csv"),
        "/",
        "/etc/passwd",
        "/etc",
        "sub/../../secret/data.jsonl",
        "link.csv",
        "linked-folder/data.jsonl",
        "linked-folder",
        "dataset-with-link",
        "../imports-not/x.jsonl",
        "../../../../../../../etc/passwd",
        "..",
        str(tmp_path),
    ]


def test_every_path_outside_the_root_gets_one_message_and_imports_nothing(
    import_root, tmp_path, sqlite_db, monkeypatch
):
    import core.text.formats as formats
    from core.orchestration.imports import import_file, preview_import
    from core.text.formats import OUTSIDE_IMPORT_ROOT, ServerPath

    def no_walk(_path):
        raise AssertionError("a refused path must not be walked or measured")

    monkeypatch.setattr(formats, "_size_of", no_walk)
    for typed in outside_paths(tmp_path):
        with pytest.raises(UserError) as preview_error:
            preview_import(ServerPath(typed), split="train")
        with sqlite_db.sessions() as session, session.begin(), pytest.raises(UserError) as import_error:
            import_file(session, ServerPath(typed), dataset="stolen", actor=None)
        for error in (preview_error.value, import_error.value):
            assert str(error) == OUTSIDE_IMPORT_ROOT, typed  # the same words: existence is not told
            assert SECRET_VALUE not in str(error) and SECRET_HEADER not in str(error)
    assert count_generations(sqlite_db) == 0


def test_paths_inside_the_root_import_relative_or_absolute(import_root, sqlite_db):
    from core.orchestration.imports import import_file, preview_import
    from core.text.formats import ServerPath

    assert preview_import(ServerPath("good.jsonl")).records == 3
    assert preview_import(ServerPath(str(import_root / "good.jsonl"))).records == 3
    assert preview_import(ServerPath("sub/../good.jsonl")).records == 3  # `..` that stays inside is fine
    with sqlite_db.sessions() as session, session.begin():
        report = import_file(session, ServerPath("good.jsonl"), dataset="lviv", actor=None)
    assert report.imported == 3 and report.file == "good.jsonl"
    with pytest.raises(UserError, match="no such file or folder in the import folder: missing.jsonl"):
        preview_import(ServerPath("missing.jsonl"))


def test_the_default_root_is_data_imports(monkeypatch, tmp_path):
    from core.text.formats import import_root

    monkeypatch.delenv("PROBELENS_IMPORT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert import_root() == (tmp_path / "data" / "imports").resolve()


def test_messages_about_files_inside_the_root_quote_no_content(import_root, sqlite_db):
    from core.orchestration.imports import BadImportError, import_file, preview_import
    from core.text.formats import ServerPath

    (import_root / "columns.csv").write_text(f"{SECRET_HEADER},other\n{SECRET_VALUE},x\n", encoding="utf-8")
    with pytest.raises(UserError) as columns:
        preview_import(ServerPath("columns.csv"))
    assert "expected a 'conversation' column" in str(columns.value) and "2 other columns" in str(columns.value)
    assert SECRET_HEADER not in str(columns.value) and SECRET_VALUE not in str(columns.value)

    (import_root / "broken.parquet").write_bytes(f"{SECRET_VALUE} is no parquet".encode())
    with pytest.raises(UserError) as parquet:
        preview_import(ServerPath("broken.parquet"))
    assert str(parquet.value) == "broken.parquet: not a readable Parquet file"

    answer = "Lviv was founded in 1256."
    bad = [
        {"conversation": [{"role": "user", "content": "q"}, {"role": f"{SECRET_VALUE}-role", "content": answer}]},
        {
            "conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
            "spans": [{"start": 0, "end": 4, "label": f'{SECRET_VALUE}" quoted "label'}],
        },
        {
            "conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}],
            "annotations": [{"span": "Lviv", "label": [SECRET_VALUE]}],
        },
        {"conversation": [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}], "split": 7},
    ]
    path = import_root / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in bad) + "\n", encoding="utf-8")
    preview = preview_import(ServerPath("bad.jsonl"))
    assert [n for n, _reason in preview.problems] == [1, 2, 3, 4]  # line numbers and reasons stay
    assert 'must have role "assistant"' in preview.problems[0][1] and "unknown label" in preview.problems[1][1]
    assert not [r for _n, r in preview.problems if SECRET_VALUE in r], preview.problems
    with sqlite_db.sessions() as session, session.begin(), pytest.raises(BadImportError) as failed:
        import_file(session, ServerPath("bad.jsonl"), dataset="bad", actor=None)
    assert SECRET_VALUE not in str(failed.value) and all(SECRET_VALUE not in r for _n, r in failed.value.problems)
    assert count_generations(sqlite_db) == 0
    # the same file uploaded (its owner holds it anyway) keeps the helpful quotes
    uploaded = preview_import(path.read_bytes(), "bad.jsonl")
    assert any(SECRET_VALUE in r for _n, r in uploaded.problems)


def test_a_plain_path_stays_trusted_for_the_operator_cli(import_root, tmp_path, sqlite_db):
    """`python -m core import FILE` is run by someone with a shell: not confined (README, Security)."""
    from core.orchestration.imports import import_file

    with sqlite_db.sessions() as session, session.begin():
        report = import_file(session, str(tmp_path / "secret" / "data.jsonl"), dataset="ops", actor=None)
    assert report.imported == 3


def test_the_data_page_refuses_a_path_outside_the_root(import_root, app_database, tmp_path):
    add_users(app_database, ("boss", "boss-password", "admin"))
    at = sign_in("boss", "boss-password", "pages/data.py")
    for typed in ("../secret/secret.csv", str(tmp_path / "secret" / "nothing-here"), "/"):
        at.text_input(key="imp-folder").set_value(typed).run()
        assert not at.exception, at.exception
        errors = [e.value for e in at.error]
        assert len(errors) == 1 and "inside the server" in errors[0] and "import folder" in errors[0], errors
        assert not any(SECRET_VALUE in e or SECRET_HEADER in e for e in errors)
        assert not [b for b in at.button if b.label.startswith("Import into")]
    at.text_input(key="imp-folder").set_value("good.jsonl").run()
    assert not at.error, [e.value for e in at.error]
    next(b for b in at.button if b.label.startswith("Import into")).click().run()
    assert any("Imported 3 answers" in s.value for s in at.success)
    assert count_generations(app_database) == 3

"""Issue #12, finding 3 (and the probe part of finding 8): an uploaded probe is untrusted input.

Each test builds one hostile zip and hands it to `registry.upload_probe` (the Probes page's
path) or to `python -m core probes import` against a real SQLite file and the tiny model: one
clear UserError, no probe row, no folder under the probes directory. A stored row with odd
metrics must not crash any reader: the versions table, the comparison rows, `probes list`,
the Probes page and the Inspect page.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as save_tensors
from sqlalchemy import func, select

from core.base.errors import ModelMismatchError, UserError
from tests.support.probe_zips import good_config, probe_zip, weights, zip_of

# --- building uploads ---------------------------------------------------------------------------


@pytest.fixture()
def probes_dir(isolated_cache, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return tmp_path / "probes"


def with_declared_size(data: bytes, name: str, size: int) -> bytes:
    """The zip with `name`'s uncompressed size in both its headers replaced by `size` (a lying zip)."""
    out = bytearray(data)
    encoded = name.encode()
    for signature, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (at := out.find(signature, start)) != -1:
            length = struct.unpack_from("<H", out, at + name_len_at)[0]
            if bytes(out[at + name_at : at + name_at + length]) == encoded:
                struct.pack_into("<I", out, at + size_at, size)
            start = at + 4
    return bytes(out)


def probe_count(database) -> int:
    from db.models import Probe

    with database.sessions() as session:
        return session.scalar(select(func.count()).select_from(Probe))


def refused(database, lm, probes_dir: Path, data: bytes, match: str, error=UserError) -> str:
    """Upload `data`; assert one UserError matching `match` and that nothing was written."""
    from core.orchestration.registry import upload_probe

    with pytest.raises(error, match=match) as caught:
        upload_probe(database, lm, data, None)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 400
    assert str(probes_dir) not in message  # no server path (nor the temporary folder's)
    assert probe_count(database) == 0
    assert not probes_dir.exists() or not any(probes_dir.iterdir()), list(probes_dir.iterdir())
    return message


# --- the base case: a clean hand-made zip registers ---------------------------------------------------


def test_a_clean_zip_registers_and_keeps_only_validated_metrics(sqlite_db, tiny_lm, probes_dir):
    from core.orchestration.registry import upload_probe
    from db.probes import get_probe

    metrics = {
        "span_max": {"auc": 0.8, "recall_at_fpr_0.1": 0.5, "n": 10, "n_pos": 4, "threshold": 0.5},
        "token": {"auc": 1.5},  # out of range: dropped
        "span": {"auc": 0.7, "f1": "high"},  # one bad field: the whole level dropped
        "counts": {"generations": 3, "tokens": 40, "spans": 10, "positive_spans": 4},
        "comparison": {"against": 3},
        "validation_ids": [1, 2, 3],  # another database's: dropped
        "baselines": {"logprob": {"auc": 0.6, "recall_at_fpr_0.1": 0.2, "span_max": {"auc": 0.6}}},
        "split": "validation",
        "n_train": 30,
        "surprise": {"x": 1},
    }
    version = upload_probe(sqlite_db, tiny_lm, probe_zip(tiny_lm, metrics=metrics, surprise_key="ignored"), None)
    with sqlite_db.sessions() as session:
        stored = get_probe(session, version).metrics
    assert stored == {
        "span_max": {"auc": 0.8, "recall_at_fpr_0.1": 0.5, "n": 10, "n_pos": 4, "threshold": 0.5},
        "counts": {"generations": 3, "tokens": 40, "spans": 10, "positive_spans": 4},
        "baselines": {"logprob": {"auc": 0.6, "recall_at_fpr_0.1": 0.2, "span_max": {"auc": 0.6}}},
        "split": "validation",
        "n_train": 30,
        "uploaded_as_version_of": 7,
    }
    from core.orchestration.probe_cache import database_version_dir

    written = json.loads((database_version_dir(sqlite_db, version) / "config.json").read_text())
    assert "surprise_key" not in written and "comparison" not in written["metrics"]


@pytest.mark.parametrize("odd", [[], "x", 5, None, {"auc": [0.9]}, {"auc": 2.0}, {"auc": 0.5, "n": 3, "n_pos": 4}])
def test_odd_uploaded_metrics_are_dropped_and_promotion_still_works(
    sqlite_db, tiny_lm, probes_dir, odd, capsys, monkeypatch
):
    """The reported crash: `"metrics": {"span_max": []}` was registered and promoting it broke every page."""
    from core.orchestration.cli import main
    from core.orchestration.registry import promote, upload_probe, versions_table
    from db.probes import get_probe

    version = upload_probe(sqlite_db, tiny_lm, probe_zip(tiny_lm, metrics={"span_max": odd, "token": odd}), None)
    promote(sqlite_db, version, None)
    with sqlite_db.sessions() as session:
        assert get_probe(session, version).metrics == {"uploaded_as_version_of": 7}
    assert versions_table(sqlite_db)[0]["span_max AUC"] is None
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["probes", "list"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["span_max_auc"] is None


def test_metrics_that_are_not_an_object_are_dropped(sqlite_db, tiny_lm, probes_dir):
    from core.orchestration.registry import upload_probe
    from db.probes import get_probe

    version = upload_probe(sqlite_db, tiny_lm, probe_zip(tiny_lm, metrics="all good, trust me"), None)
    with sqlite_db.sessions() as session:
        assert get_probe(session, version).metrics == {"uploaded_as_version_of": 7}


# --- the config: types, ranges, required fields ---------------------------------------------------------


def test_a_layer_too_large_for_a_float_is_refused(sqlite_db, tiny_lm, probes_dir):
    text = json.dumps(good_config(tiny_lm)).replace('"layer": 1', '"layer": 1e999')
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, text), "layer must be a whole number from 0 to 9999")


def test_a_fractional_looking_layer_is_refused(sqlite_db, tiny_lm, probes_dir):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, layer=3.0), r"layer must be a whole number.*not 3\.0")


@pytest.mark.parametrize("layer", [-1, 10_000, "1", True, None, [1]])
def test_a_layer_of_the_wrong_type_or_range_is_refused(sqlite_db, tiny_lm, probes_dir, layer):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, layer=layer), "layer must be a whole number")


def test_a_layer_the_model_does_not_have_is_refused(sqlite_db, tiny_lm, probes_dir):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, layer=50), "layer 50 is out of range")


def test_a_deeply_nested_config_is_refused_without_recursion_error(sqlite_db, tiny_lm, probes_dir):
    text = '{"model_id": "m", "train_config": {"x": ' + "[" * 200_000 + "]" * 200_000 + "}}"
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, text), "nested too deeply")


def test_a_moderately_nested_config_is_refused_too(sqlite_db, tiny_lm, probes_dir):
    nested: object = 1
    for _ in range(40):
        nested = {"x": nested}
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, metrics=nested), "nested too deeply")


def test_a_null_tokenizer_hash_is_refused(sqlite_db, tiny_lm, probes_dir):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, tokenizer_hash=None), "lacks tokenizer_hash")


def test_a_missing_tokenizer_hash_is_refused(sqlite_db, tiny_lm, probes_dir):
    config = good_config(tiny_lm)
    del config["tokenizer_hash"]
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, config), "lacks tokenizer_hash")


@pytest.mark.parametrize("value", ["", "not-a-hash!", "a" * 65, 12345, ["ab"]])
def test_a_tokenizer_hash_that_is_not_a_hex_hash_is_refused(sqlite_db, tiny_lm, probes_dir, value):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, tokenizer_hash=value), "tokenizer_hash must be")


def test_another_tokenizer_is_refused(sqlite_db, tiny_lm, probes_dir):
    refused(
        sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, tokenizer_hash="0" * 16), "tokenizer", ModelMismatchError
    )


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"model_id": ""}, "model_id must be non-empty text"),
        ({"model_id": "evil\x1b[31m"}, "model_id must be"),
        ({"model_id": "m" * 501}, "model_id must be"),
        ({"model_id": {"name": "x"}}, "model_id must be .*not an object"),
        ({"hidden_size": "32"}, "hidden_size must be a whole number"),
        ({"hidden_size": 0}, "hidden_size must be a whole number"),
        ({"hidden_size": 10**7}, "hidden_size must be a whole number"),
        ({"label_mapping": {"Supported": 7}}, "label_mapping must be"),
        ({"label_mapping": []}, "label_mapping must be"),
        ({"training_data_hash": 5}, "training_data_hash must be"),
        ({"created_at": "x" * 65}, "created_at must be"),
        ({"version": 10**12}, "version must be"),
        ({"version": "v\n1"}, "version must be"),
        ({"train_config": {"nested": {"a": 1}}}, "train_config must be"),
        ({"train_config": {"big": list(range(1001))}}, "train_config must be"),
        ({"train_config": "lr=1"}, "train_config must be"),
        ({"format_version": 2}, "newer than this ProbeLens supports"),
        ({"format_version": 0}, "format_version must be"),
        ({"format_version": "1"}, "format_version must be"),
    ],
)
def test_a_config_field_of_the_wrong_type_or_range_is_refused(sqlite_db, tiny_lm, probes_dir, changes, match):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, **changes), match)


@pytest.mark.parametrize("missing", ["model_id", "layer", "hidden_size"])
def test_a_config_without_a_required_field_is_refused(sqlite_db, tiny_lm, probes_dir, missing):
    config = good_config(tiny_lm)
    del config[missing]
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, config), f"probe config lacks {missing}")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "not valid JSON"),
        ('{"model_id": "m", "layer": NaN}', "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (
            '{"model_id": "' + "m" * (5 * 1024 * 1024) + '"}',
            "config.json in the probe file expands beyond its size limit",
        ),
    ],
)
def test_a_config_that_is_not_a_small_json_object_is_refused(sqlite_db, tiny_lm, probes_dir, text, match):
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm, text), match)


# --- the weights ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        (b"not safetensors at all", "not a readable safetensors file"),
        ({"weight": torch.full((32,), float("nan")), "bias": torch.zeros(1)}, "finite floating-point"),
        ({"weight": torch.zeros(32), "bias": torch.tensor([float("inf")])}, "finite floating-point"),
        ({"weight": torch.zeros(32, dtype=torch.int32), "bias": torch.zeros(1)}, "finite floating-point"),
        ({"weight": torch.zeros(31), "bias": torch.zeros(1)}, "inconsistent"),
        ({"weight": torch.zeros(2, 16), "bias": torch.zeros(1)}, "must hold tensors"),
    ],
)
def test_weights_that_are_not_a_finite_probe_are_refused(sqlite_db, tiny_lm, probes_dir, tensors, match):
    data = tensors if isinstance(tensors, bytes) else save_tensors(tensors)
    refused(
        sqlite_db,
        tiny_lm,
        probes_dir,
        zip_of({"config.json": json.dumps(good_config(tiny_lm)), "probe.safetensors": data}),
        match,
    )


# --- the zip itself -------------------------------------------------------------------------------------


def test_a_zip_that_understates_a_size_is_refused(sqlite_db, tiny_lm, probes_dir):
    data = with_declared_size(probe_zip(tiny_lm), "config.json", 10)
    refused(sqlite_db, tiny_lm, probes_dir, data, "probe file is damaged: config.json does not match")


def test_a_zip_bomb_that_understates_its_size_is_refused(sqlite_db, tiny_lm, probes_dir):
    bomb = zip_of({"config.json": " " * (50 * 1024 * 1024) + "{}", "probe.safetensors": weights(tiny_lm.hidden_size)})
    assert len(bomb) < 200_000
    refused(sqlite_db, tiny_lm, probes_dir, with_declared_size(bomb, "config.json", 100), "probe file is damaged")


def test_a_zip_bomb_that_declares_its_size_is_refused_before_reading(sqlite_db, tiny_lm, probes_dir):
    bomb = zip_of({"config.json": " " * (50 * 1024 * 1024) + "{}", "probe.safetensors": weights(tiny_lm.hidden_size)})
    refused(sqlite_db, tiny_lm, probes_dir, bomb, "config.json in the probe file expands beyond its size limit")


def test_a_zip_that_overstates_a_size_is_refused(sqlite_db, tiny_lm, probes_dir):
    data = with_declared_size(probe_zip(tiny_lm), "probe.safetensors", 4000)
    refused(sqlite_db, tiny_lm, probes_dir, data, "probe file is damaged: probe.safetensors does not match")


def test_a_huge_declared_size_is_refused(sqlite_db, tiny_lm, probes_dir):
    data = with_declared_size(probe_zip(tiny_lm), "probe.safetensors", 2**32 - 1)
    refused(sqlite_db, tiny_lm, probes_dir, data, "probe.safetensors in the probe file expands beyond its size limit")


def test_a_zip_with_too_many_entries_is_refused(sqlite_db, tiny_lm, probes_dir):
    members = {f"pad{i}.txt": "x" for i in range(40)}
    members.update({"config.json": json.dumps(good_config(tiny_lm)), "probe.safetensors": weights(32)})
    refused(sqlite_db, tiny_lm, probes_dir, zip_of(members), "has 42 entries")


@pytest.mark.parametrize(
    "name", ["../config.json", "/config.json", "..\\config.json", "C:/config.json", "probe/../../config.json"]
)
def test_a_path_outside_the_zip_is_refused(sqlite_db, tiny_lm, probes_dir, name):
    data = zip_of({name: json.dumps(good_config(tiny_lm)), "probe.safetensors": weights(32)})
    refused(sqlite_db, tiny_lm, probes_dir, data, "path outside the zip")


def test_nested_folders_are_refused(sqlite_db, tiny_lm, probes_dir):
    data = zip_of({"probe-v1/config.json": json.dumps(good_config(tiny_lm)), "probe-v1/probe.safetensors": weights(32)})
    refused(sqlite_db, tiny_lm, probes_dir, data, "holds folders")


def test_other_files_are_refused(sqlite_db, tiny_lm, probes_dir):
    data = zip_of(
        {"config.json": json.dumps(good_config(tiny_lm)), "probe.safetensors": weights(32), "run.sh": "rm -rf /"}
    )
    refused(sqlite_db, tiny_lm, probes_dir, data, "files other than config.json and probe.safetensors")


def test_a_member_twice_is_refused(sqlite_db, tiny_lm, probes_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("config.json", json.dumps(good_config(tiny_lm)))
        archive.writestr("config.json", json.dumps(good_config(tiny_lm, layer=2)))
        archive.writestr("probe.safetensors", weights(32))
    refused(sqlite_db, tiny_lm, probes_dir, buffer.getvalue(), "holds config.json twice")


def test_a_link_is_refused(sqlite_db, tiny_lm, probes_dir):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("config.json")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("probe.safetensors", weights(32))
    refused(sqlite_db, tiny_lm, probes_dir, buffer.getvalue(), "holds a link")


def test_a_missing_member_is_refused(sqlite_db, tiny_lm, probes_dir):
    refused(
        sqlite_db, tiny_lm, probes_dir, zip_of({"probe.safetensors": weights(32)}), "config.json missing from the zip"
    )


@pytest.mark.parametrize("data", [b"", b"this is not a zip", b"PK\x05\x06" + b"\x00" * 18, b"PK\x03\x04garbage"])
def test_bytes_that_are_not_a_zip_are_refused(sqlite_db, tiny_lm, probes_dir, data):
    refused(sqlite_db, tiny_lm, probes_dir, data, "not a probe file")


def test_an_upload_over_the_size_limit_is_refused(sqlite_db, tiny_lm, probes_dir, monkeypatch):
    import core.probes.archive as archive

    monkeypatch.setattr(archive, "MAX_UPLOAD_BYTES", 1000)
    refused(sqlite_db, tiny_lm, probes_dir, probe_zip(tiny_lm) + b"\x00" * 1000, "the limit is")


# --- the CLI gives the same one line --------------------------------------------------------------------


def test_cli_import_of_a_hostile_zip_prints_one_line_and_writes_nothing(
    sqlite_db, tiny_lm, tiny_model_dir, probes_dir, tmp_path, monkeypatch, capsys
):
    from core.orchestration.cli import main

    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    cases = [
        (
            probe_zip(
                tiny_lm,
                json.dumps(good_config(tiny_lm, metrics={"span_max": []})).replace('"layer": 1', '"layer": 1e999'),
            ),
            "layer must be a whole number",
        ),
        (with_declared_size(probe_zip(tiny_lm), "config.json", 10), "probe file is damaged"),
        (probe_zip(tiny_lm, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"), "nested too deeply"),
        (probe_zip(tiny_lm, tokenizer_hash=None), "lacks tokenizer_hash"),
    ]
    for data, match in cases:
        upload = tmp_path / "upload.zip"
        upload.write_bytes(data)
        assert main(["probes", "--model", str(tiny_model_dir), "import", str(upload)]) == 2
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], captured.err
        assert "Traceback" not in captured.err and captured.out == ""
    assert main(["probes", "--model", str(tiny_model_dir), "import", str(tmp_path / "nowhere.zip")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert probe_count(sqlite_db) == 0
    assert not probes_dir.exists() or not any(probes_dir.iterdir())
    # and a clean one goes through the same command
    (tmp_path / "good.zip").write_bytes(probe_zip(tiny_lm))
    assert main(["probes", "--model", str(tiny_model_dir), "import", str(tmp_path / "good.zip")]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": 1}


# --- stored rows with odd metrics: every reader shows blanks -----------------------------------------------

ODD_METRICS = [
    {"span_max": [], "token": "x", "comparison": 5},
    {
        "span_max": {"auc": "high", "recall_at_fpr_0.1": [1]},
        "token": {"auc": float("nan")},
        "n_train": "many",
        "n_validation": True,
        "comparison": {
            "against": "v9",
            "n_generations": {"x": 1},
            "skipped": 12,
            "span_max": {"auc": {"ci": "wide", "delta": [1]}, "recall_at_fpr_0.1": []},
            "token": {"auc": {"ci": [None, "x", 3], "a": "0.5", "b": None}},
        },
    },
]


def register_odd(database, lm, directory: Path, metrics, *, active: bool = True) -> int:
    """A stored version whose files are a real probe for `lm` but whose row holds `metrics` as given."""
    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db.probes import register_probe

    config = ProbeConfig(model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=1, hidden_size=lm.hidden_size)
    save_probe(directory, LinearProbe.from_weights(torch.linspace(-1, 1, lm.hidden_size), torch.zeros(1)), config)
    config.metrics = metrics
    with database.sessions() as session, session.begin():
        return register_probe(session, artifact_dir=str(directory), config=config, activate=active).version


@pytest.mark.parametrize("metrics", ODD_METRICS)
def test_readers_tolerate_odd_stored_metrics(sqlite_db, tiny_lm, probes_dir, metrics, monkeypatch, capsys):
    from core.orchestration.cli import main
    from core.orchestration.registry import comparison_rows, versions_table
    from core.probes.stored_metrics import headline_auc

    register_odd(sqlite_db, tiny_lm, probes_dir / "v1", metrics)
    row = versions_table(sqlite_db)[0]
    assert row["version"] == 1 and row["active"]
    assert all(
        row[k] is None
        for k in (
            "token AUC",
            "span_max AUC",
            "recall@10%FPR",
            "train answers",
            "validation answers",
            "vs",
            "Δ span_max AUC (this − vs)",
            "Δ CI low",
            "Δ CI high",
        )
    )
    for r in comparison_rows(metrics):
        assert all(v is None or isinstance(v, float) for k, v in r.items() if k not in ("level", "metric"))
    assert headline_auc(metrics) is None
    for odd in (None, [], "x", 5, {"span_max": None}, {"span_max": {"auc": True}}, {"span_max": {"auc": 1e999}}):
        assert headline_auc(odd) is None and comparison_rows(odd) == []
    assert headline_auc({"span_max": {"auc": 0.75}}) == 0.75
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["probes", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["version"] == 1 and listed[0]["span_max_auc"] is None


@pytest.fixture()
def app_env(app_database, monkeypatch, tmp_path, tiny_model_dir, tiny_lm, isolated_cache):
    from tests.support.apptest import add_users
    from tests.support.capitals import seed

    monkeypatch.setenv("PROBELENS_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    add_users(app_database, ("boss", "boss-password", "admin"))
    seed(app_database)
    register_odd(app_database, tiny_lm, tmp_path / "probes" / "v1", {"span_max": {"auc": 0.9}}, active=False)
    for n, metrics in enumerate(reversed(ODD_METRICS)):  # v3, the active one, holds {"span_max": [], ...}
        register_odd(app_database, tiny_lm, tmp_path / "probes" / f"odd{n}", metrics)
    return app_database


def open_page(page: str):
    """Sign in (app.py runs with its sidebar, whose caption reads the active version's metrics),
    then open `page`; neither run may raise."""
    from tests.support.apptest import sign_in

    at = sign_in("boss", "boss-password")
    assert not at.exception, at.exception
    assert at.session_state["user"].name == "boss"
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_probes_page_shows_blanks_for_odd_metrics(app_env):
    """The active version's row holds {"span_max": [], ...} (the reported crash, through the sidebar)."""
    at = open_page("pages/probes.py")
    table = at.dataframe[0].value
    assert list(table["version"]) == [3, 2, 1]
    assert table["span_max AUC"].isna().tolist() == [True, True, False]
    for version in (3, 2, 1):
        at.selectbox(key="probe-version-3").select(version).run()
        assert not at.exception, at.exception


def test_the_inspect_page_works_with_odd_metrics(app_env):
    at = open_page("pages/inspect.py")
    assert any("v3 (layer 1)" in c.value for c in at.caption)
    at.selectbox(key="insp-version").select(2).run()
    assert not at.exception, at.exception

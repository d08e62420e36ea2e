"""Probe files live in the database (issue #16): registration stores them in its transaction,
the probes folder is only a cache by content hash, and any host with the database loads any
version, a tampered cache folder being rewritten from the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from core.base.errors import UserError
from core.orchestration.registry import load_version, promote, register_version
from core.probes.config import ProbeConfig
from core.probes.files import save_probe
from core.probes.linear import LinearProbe
from core.probes.version_files import VERSION_FILES, file_sha256, files_hash, materialise, read_version_files

REPO = Path(__file__).resolve().parents[1]
CONVERSATION = [{"role": "user", "content": "Capital of Peru?"}, {"role": "assistant", "content": "Lima, I think."}]


@pytest.fixture()
def probes_dir(isolated_cache, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    return tmp_path / "probes"


def register_linear(database, lm, *, seed: int = 0, in_transaction=None) -> int:
    torch.manual_seed(seed)
    probe = LinearProbe.from_weights(torch.randn(lm.hidden_size), torch.randn(1))

    def write(staging: Path, version: int) -> ProbeConfig:
        config = ProbeConfig(
            model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=2, hidden_size=lm.hidden_size, version=version
        )
        save_probe(staging, probe, config)
        return config

    return register_version(database, write, in_transaction=in_transaction).probe_version


def scores(lm, loaded) -> list[float]:
    return loaded.head.predict(loaded.hidden(lm, CONVERSATION)).tolist()


def stored_rows(database) -> list[tuple[int, str, str, bytes]]:
    from db.models import ProbeFile

    with database.sessions() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(ProbeFile.probe_id, ProbeFile.name, ProbeFile.sha256, ProbeFile.content).order_by(ProbeFile.name)
            )
        ]


# --- the pure cache --------------------------------------------------------------------------


def test_materialise_writes_a_folder_named_by_the_content_hash_and_reuses_an_intact_one(tmp_path):
    files = {"config.json": b"{}", "probe.safetensors": b"weights", "adapter/adapter_config.json": b'{"r": 4}'}
    folder = materialise(files, tmp_path)
    assert folder == tmp_path / files_hash(files) and len(folder.name) == 64
    assert all(c in "0123456789abcdef" for c in folder.name)
    assert read_version_files(folder) == files
    stamp = (folder / "probe.safetensors").stat().st_mtime_ns
    assert materialise(files, tmp_path) == folder and (folder / "probe.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no temporary folders left
    different = {**files, "probe.safetensors": b"other weights"}
    assert materialise(different, tmp_path) != folder


@pytest.mark.parametrize("name", ["../escaped", "/abs/config.json", "adapter/../../x", "README.md", "v1/config.json"])
def test_only_the_known_file_names_are_materialised(tmp_path, name):
    with pytest.raises(UserError, match="unexpected file name"):
        materialise({"config.json": b"{}", "probe.safetensors": b"w", name: b"x"}, tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "x").exists()


def test_a_head_or_config_missing_is_refused(tmp_path):
    with pytest.raises(UserError, match="probe.safetensors missing"):
        materialise({"config.json": b"{}"}, tmp_path)


# --- registration and loading ------------------------------------------------------------------


def test_registration_stores_every_file_with_its_hash_in_the_database(sqlite_db, tiny_lm, probes_dir):
    from db.models import Probe

    version = register_linear(sqlite_db, tiny_lm)
    with sqlite_db.sessions() as session:
        row = session.scalar(select(Probe).where(Probe.version == version))
        probe_id, content_hash, path = row.id, row.content_hash, Path(row.artifact_path)
    rows = stored_rows(sqlite_db)
    assert [name for _, name, _, _ in rows] == ["config.json", "probe.safetensors"]
    assert all(pid == probe_id and sha == file_sha256(data) for pid, _, sha, data in rows)
    files = {name: data for _, name, _, data in rows}
    assert json.loads(files["config.json"])["version"] == version
    assert content_hash == files_hash(files) and path == probes_dir / content_hash
    assert read_version_files(path) == files
    assert sorted(p.name for p in probes_dir.iterdir()) == [content_hash]  # no staging leftovers, no v<N>


def test_a_failed_registration_stores_no_file_and_leaves_no_folder(sqlite_db, tiny_lm, probes_dir):
    from db.models import Probe

    def fail(_session, _row):
        raise RuntimeError("the run was cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        register_linear(sqlite_db, tiny_lm, in_transaction=fail)
    with sqlite_db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Probe)) == 0
    assert stored_rows(sqlite_db) == []
    assert not probes_dir.exists() or not any(probes_dir.iterdir())


def test_a_version_loads_promotes_and_downloads_from_the_database_alone(
    sqlite_db, tiny_lm, probes_dir, tmp_path, monkeypatch
):
    import shutil
    import zipfile

    from core.orchestration.cli import main

    version = register_linear(sqlite_db, tiny_lm)
    before = scores(tiny_lm, load_version(sqlite_db, tiny_lm, version))
    shutil.rmtree(probes_dir)
    promote(sqlite_db, version, None)  # checks the files: materialised again from the database
    shutil.rmtree(probes_dir)
    assert scores(tiny_lm, load_version(sqlite_db, tiny_lm)) == pytest.approx(before, abs=1e-7)
    shutil.rmtree(probes_dir)
    monkeypatch.setenv("DATABASE_URL", sqlite_db.engine.url.render_as_string(hide_password=False))
    assert main(["probes", "export", str(version), "--out", str(tmp_path / "v.zip")]) == 0
    assert sorted(zipfile.ZipFile(tmp_path / "v.zip").namelist()) == ["config.json", "probe.safetensors"]


@pytest.mark.parametrize("name", ["probe.safetensors", "config.json"])
def test_a_tampered_cache_folder_is_detected_by_hash_and_rewritten_from_the_database(
    sqlite_db, tiny_lm, probes_dir, name
):
    version = register_linear(sqlite_db, tiny_lm)
    before = scores(tiny_lm, load_version(sqlite_db, tiny_lm, version))
    (folder,) = [p for p in probes_dir.iterdir()]
    original = (folder / name).read_bytes()
    tampered = bytearray(original)
    if name == "config.json":
        tampered = bytearray(original.replace(b'"layer": 2', b'"layer": 1'))
    else:
        tampered[-1] ^= 0x55  # the last float's last byte: still a readable tensors file
    assert bytes(tampered) != original
    (folder / name).write_bytes(bytes(tampered))
    loaded = load_version(sqlite_db, tiny_lm, version)
    assert (folder / name).read_bytes() == original
    assert loaded.layer == 2 and scores(tiny_lm, loaded) == pytest.approx(before, abs=1e-7)


def test_an_extra_adapter_file_in_a_linear_cache_folder_is_not_trusted(sqlite_db, tiny_lm, probes_dir):
    version = register_linear(sqlite_db, tiny_lm)
    (folder,) = [p for p in probes_dir.iterdir()]
    (folder / "adapter").mkdir()
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    assert load_version(sqlite_db, tiny_lm, version).kind == "linear"
    assert not (folder / "adapter").exists()


def test_a_damaged_database_file_is_refused_with_one_message(sqlite_db, tiny_lm, probes_dir):
    import shutil

    from sqlalchemy import update

    from db.models import ProbeFile

    version = register_linear(sqlite_db, tiny_lm)
    shutil.rmtree(probes_dir)
    with sqlite_db.sessions() as session, session.begin():
        session.execute(update(ProbeFile).where(ProbeFile.name == "probe.safetensors").values(content=b"junk"))
    with pytest.raises(UserError, match="probe.safetensors is damaged"):
        load_version(sqlite_db, tiny_lm, version)


# --- two hosts: one database, two probes folders --------------------------------------------------

OTHER_HOST = """
import json, sys
from core.engine.model import load_model
from core.orchestration.registry import load_version
from db import open_database

model_dir, url, conversation = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
lm, database = load_model(model_dir), open_database(url)
out = {}
for version in map(int, sys.argv[4:]):
    loaded = load_version(database, lm, version)
    out[version] = {"kind": loaded.kind, "scores": loaded.head.predict(loaded.hidden(lm, conversation)).tolist()}
print(json.dumps(out))
"""


def lora_version(database, lm) -> int:
    """A tiny LoRA probe (as tests/test_lora_versions.py trains it), registered."""
    from core.base.types import Generation
    from core.probes.lora import LoraSettings, train_lora_probe
    from core.probes.lora_pipeline import save_lora_probe
    from tests.support.capitals import answers

    gens = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": c}], spans=s)
        for p, c, s, _ in answers()[:8]
    ]
    settings = LoraSettings(rank=2, epochs=1, batch_answers=8, lr=5e-3, kl_weight=0.1)
    result = train_lora_probe(lm, gens, 3, settings)

    def write(staging: Path, version: int) -> ProbeConfig:
        config = ProbeConfig(
            model_id=lm.model_id,
            tokenizer_hash=lm.tokenizer_hash,
            layer=3,
            hidden_size=lm.hidden_size,
            version=version,
            kind="lora",
            lora=settings.to_dict(),
        )
        save_lora_probe(staging, result, config)
        return config

    return register_version(database, write).probe_version


def test_a_probe_registered_on_one_host_loads_on_another_from_the_database_alone(
    sqlite_db, tiny_lm, tiny_model_dir, probes_dir, tmp_path
):
    linear, lora = register_linear(sqlite_db, tiny_lm), lora_version(sqlite_db, tiny_lm)
    here = {v: scores(tiny_lm, load_version(sqlite_db, tiny_lm, v)) for v in (linear, lora)}
    assert len(stored_rows(sqlite_db)) == 2 + 4  # the LoRA version's adapter files are stored too
    other_folder = tmp_path / "other-host-probes"
    env = {**os.environ, "PROBELENS_PROBES_DIR": str(other_folder), "PYTHONPATH": str(REPO)}
    env.pop("DATABASE_URL", None)
    url = sqlite_db.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", OTHER_HOST, str(tiny_model_dir), url, json.dumps(CONVERSATION), str(linear), str(lora)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    assert there[str(linear)]["kind"] == "linear" and there[str(lora)]["kind"] == "lora"
    for version in (linear, lora):
        assert there[str(version)]["scores"] == pytest.approx(here[version], abs=1e-5)
    assert here[linear] != pytest.approx(here[lora], abs=1e-3)  # the adapters changed the states read
    with sqlite_db.sessions() as session:
        from db.models import Probe

        hashes = set(session.scalars(select(Probe.content_hash)))
    assert {p.name for p in other_folder.iterdir()} == hashes  # the other host's cache, by content hash
    for folder in other_folder.iterdir():
        assert set(read_version_files(folder)) <= set(VERSION_FILES)

"""Migration 0004 (issue #16) moves each existing version's folder into the database, on SQLite and
PostgreSQL: files and hashes stored, a missing folder reported and skipped, and the version
loads after its folder is deleted."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from sqlalchemy import text

from core.base.errors import UserError
from core.probes.config import ProbeConfig
from core.probes.files import save_probe
from core.probes.linear import LinearProbe
from core.probes.version_files import file_sha256, files_hash, read_version_files
from db.migrate import current_revision, downgrade, head_revision, upgrade
from tests.support.schema import schema_differences

CONVERSATION = [{"role": "user", "content": "Capital of Kenya?"}, {"role": "assistant", "content": "Nairobi."}]


def old_row(conn, version: int, path: Path) -> None:
    """A probes row as revision 0003 wrote it (no content hash, no files in the database)."""
    conn.execute(
        text(
            "INSERT INTO probes (version, model_id, layer, artifact_path, metrics, active, created_at) "
            "VALUES (:v, 1, 2, :p, '{}', :a, CURRENT_TIMESTAMP)"
        ),
        {"v": version, "p": str(path), "a": version == 1},
    )


def test_0004_moves_existing_probe_folders_into_the_database(
    any_db, tiny_lm, isolated_cache, tmp_path, monkeypatch, caplog
):
    from core.orchestration.registry import load_version

    downgrade(any_db.engine, "0003")
    torch.manual_seed(0)
    probe = LinearProbe.from_weights(torch.randn(tiny_lm.hidden_size), torch.randn(1))
    config = ProbeConfig(
        model_id=tiny_lm.model_id,
        tokenizer_hash=tiny_lm.tokenizer_hash,
        layer=2,
        hidden_size=tiny_lm.hidden_size,
        version=1,
    )
    old_probes = tmp_path / "old-probes"
    save_probe(old_probes / "v1", probe, config)
    save_probe(old_probes / "v3", probe, ProbeConfig(**{**config.to_dict(), "version": 3, "kind": "lora"}))
    (old_probes / "v3" / "adapter").mkdir()
    (old_probes / "v3" / "adapter" / "adapter_config.json").write_bytes(b'{"r": 2}')
    (old_probes / "v3" / "adapter" / "adapter_model.safetensors").write_bytes(b"adapter weights")
    (old_probes / "v3" / "adapter" / "README.md").write_text("PEFT's model card: not part of the version")
    expected = {1: read_version_files(old_probes / "v1"), 3: read_version_files(old_probes / "v3")}
    with any_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (name, tokenizer_hash, hidden_size, created_at) "
                "VALUES (:n, :t, :h, CURRENT_TIMESTAMP)"
            ),
            {"n": tiny_lm.model_id, "t": tiny_lm.tokenizer_hash, "h": tiny_lm.hidden_size},
        )
        old_row(conn, 1, old_probes / "v1")
        old_row(conn, 2, old_probes / "v2")  # its folder is gone
        old_row(conn, 3, old_probes / "v3")

    with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
        upgrade(any_db.engine)
    assert current_revision(any_db.engine) == head_revision()  # 0004 and every later migration ran
    with any_db.engine.connect() as conn:
        assert schema_differences(conn) == []
        stored = conn.execute(
            text(
                "SELECT p.version, f.name, f.sha256, f.size, f.content FROM probe_files f "
                "JOIN probes p ON p.id = f.probe_id ORDER BY p.version, f.name"
            )
        ).all()
        hashes = dict(conn.execute(text("SELECT version, content_hash FROM probes")).all())
    by_version: dict[int, dict[str, bytes]] = {}
    for version, name, sha, size, content in stored:
        assert sha == file_sha256(bytes(content)) and size == len(content)
        by_version.setdefault(version, {})[name] = bytes(content)
    assert by_version == expected
    assert hashes == {1: files_hash(expected[1]), 2: None, 3: files_hash(expected[3])}
    assert any(
        "probe v2" in r.getMessage() and "skipped" in r.getMessage() and r.levelname == "WARNING"
        for r in caplog.records
    )

    shutil.rmtree(old_probes)
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "cache-probes"))
    loaded = load_version(any_db, tiny_lm, 1)
    forced = loaded.head.predict(loaded.hidden(tiny_lm, CONVERSATION)).tolist()
    assert forced == pytest.approx(probe.predict(loaded.hidden(tiny_lm, CONVERSATION)).tolist(), abs=1e-7)
    assert (tmp_path / "cache-probes" / hashes[1]).is_dir()
    with pytest.raises(UserError, match="probe version 2 has no files in the database"):
        load_version(any_db, tiny_lm, 2)

    downgrade(any_db.engine, "0003")  # and back: the rows stay, the files table goes
    with any_db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM probes")).scalar() == 3
    upgrade(any_db.engine)

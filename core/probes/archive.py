"""A probe directory as one zip file: what the Probes page downloads and accepts back.

An upload is untrusted: only the two probe files are read (no paths, no links, bounded
size), and the probe is loaded against the model it will be used with before anything
is registered.
"""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from core.base.errors import UserError
from core.probes.config import CONFIG_FILE, PROBE_FILE, ProbeConfig
from core.probes.files import load_probe
from core.probes.linear import LinearProbe

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a probe is hidden_size floats; 64 MB is far beyond any model here
MEMBERS = (CONFIG_FILE, PROBE_FILE)


def pack_probe(directory: str | Path) -> bytes:
    """The probe directory as zip bytes (config.json + probe.safetensors at the top level)."""
    load_probe(directory)  # refuse to hand out a damaged probe
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in MEMBERS:
            archive.write(Path(directory) / name, arcname=name)
    return buffer.getvalue()


def unpack_probe(data: bytes, destination: str | Path, *, expect_model_id: str | None = None,
                 expect_tokenizer_hash: str | None = None,
                 expect_hidden_size: int | None = None) -> tuple[LinearProbe, ProbeConfig]:
    """Check a zip and write its probe to `destination`; UserError/ModelMismatchError and nothing written if bad."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"probe file is {len(data) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 1_000_000} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UserError("not a probe file: expected a .zip holding config.json and probe.safetensors") from None
    with archive:
        names = {Path(i.filename).name: i for i in archive.infolist() if not i.is_dir()}
        missing = [m for m in MEMBERS if m not in names]
        if missing:
            raise UserError(f"not a probe file: {', '.join(missing)} missing from the zip")
        if sum(names[m].file_size for m in MEMBERS) > MAX_UPLOAD_BYTES:
            raise UserError("probe file expands beyond the size limit")
        with tempfile.TemporaryDirectory() as tmp:
            for member in MEMBERS:
                (Path(tmp) / member).write_bytes(archive.read(names[member]))
            probe, config = load_probe(tmp, expect_model_id=expect_model_id,
                                       expect_tokenizer_hash=expect_tokenizer_hash,
                                       expect_hidden_size=expect_hidden_size)
            target = Path(destination)
            if target.exists() and any(target.iterdir()):
                raise UserError(f"{target} already exists")
            target.mkdir(parents=True, exist_ok=True)
            for member in MEMBERS:
                (target / member).write_bytes((Path(tmp) / member).read_bytes())
    return probe, config

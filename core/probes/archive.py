"""A probe directory as one zip file: what the Probes page downloads and accepts back.

An upload is untrusted. The zip must hold exactly `config.json` and `probe.safetensors` at
its top level (no folders, links, `..` or absolute paths, no other entries, no encryption);
each member is decompressed in chunks under a hard cap, whatever its header claims, and a
member whose data does not match its header is refused. The config is checked against the
schema (`ProbeConfig.from_dict(untrusted=True)`) and the probe against the model it will be
used with before anything is written. Every refusal is one UserError.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from core.base.errors import UserError
from core.probes.config import (
    ADAPTER_DIR,
    CONFIG_FILE,
    MAX_CONFIG_BYTES,
    PROBE_FILE,
    ProbeConfig,
    parse_config_json,
)
from core.probes.files import checked_probe, load_probe
from core.probes.kinds import kind_of
from core.probes.linear import LinearProbe

MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a probe is hidden_size floats; 64 MB is far beyond any model here
MEMBERS = (CONFIG_FILE, PROBE_FILE)
# A LoRA probe's PEFT files travel flat beside them and are unpacked into adapter/.
ADAPTER_MEMBERS = ("adapter_config.json", "adapter_model.safetensors")
MEMBER_LIMITS = {
    CONFIG_FILE: MAX_CONFIG_BYTES,
    PROBE_FILE: MAX_UPLOAD_BYTES,
    "adapter_config.json": MAX_CONFIG_BYTES,
    "adapter_model.safetensors": MAX_UPLOAD_BYTES,
}
MAX_ENTRIES = 16  # more than this is refused before any entry is looked at
CHUNK = 1024 * 1024
WHAT = "a .zip holding config.json and probe.safetensors at its top level"


def pack_probe(directory: str | Path) -> bytes:
    """The probe directory as zip bytes (config.json + probe.safetensors at the top level)."""
    load_probe(directory)  # refuse to hand out a damaged probe
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in MEMBERS:
            archive.write(Path(directory) / name, arcname=name)
        adapter = Path(directory) / ADAPTER_DIR
        for name in ADAPTER_MEMBERS:
            if (adapter / name).is_file():
                archive.write(adapter / name, arcname=name)
    return buffer.getvalue()


def _too_big(name: str) -> str:
    return f"{name} in the probe file expands beyond its size limit ({MEMBER_LIMITS[name] // 2**20} MB)"


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The two members, after refusing anything else the zip holds."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise UserError(f"probe file has {len(infos)} entries; expected {WHAT}")
    found: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise UserError("probe file holds a path outside the zip (absolute or with '..'); refused")
        if info.is_dir() or len(parts) != 1:
            raise UserError(f"probe file holds folders; expected {WHAT}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UserError("probe file holds a link; refused")
        if name not in MEMBERS and name not in ADAPTER_MEMBERS:
            raise UserError(
                f"probe file holds files other than config.json and probe.safetensors (and a LoRA "
                f"probe's adapter_config.json and adapter_model.safetensors); expected {WHAT}"
            )
        if name in found:
            raise UserError(f"probe file holds {name} twice")
        if info.flag_bits & 0x1:
            raise UserError("probe file is encrypted; upload an unencrypted zip")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UserError("probe file uses an unsupported compression; use a plain (deflate) zip")
        if info.file_size > MEMBER_LIMITS[name]:
            raise UserError(_too_big(name))
        found[name] = info
    missing = [m for m in MEMBERS if m not in found]
    if missing:
        raise UserError(f"not a probe file: {', '.join(missing)} missing from the zip")
    return found


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, decompressed in chunks and stopped at its cap, checked against its header."""
    limit = MEMBER_LIMITS[info.filename]
    chunks, total = [], 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise UserError(_too_big(info.filename))
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError, NotImplementedError, RuntimeError):
        raise UserError(
            f"probe file is damaged: {info.filename} does not match the sizes or checksum its zip header declares"
        ) from None
    if total != info.file_size:
        raise UserError(
            f"probe file is damaged: {info.filename} does not match the sizes or checksum its zip header declares"
        )
    return b"".join(chunks)


def unpack_probe(
    data: bytes,
    destination: str | Path,
    *,
    expect_model_id: str | None = None,
    expect_tokenizer_hash: str | None = None,
    expect_hidden_size: int | None = None,
) -> tuple[LinearProbe, ProbeConfig]:
    """Check a zip and write its probe to `destination`; UserError/ModelMismatchError and nothing written if bad.

    What is written is the checked config (unknown keys and unvalidated metrics left out)
    and the probe's tensors file as uploaded (already parsed and checked)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"probe file is {len(data) / 1e6:.0f} MB; the limit is {MAX_UPLOAD_BYTES // 1_000_000} MB")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
        raise UserError(f"not a probe file: expected {WHAT}") from None
    with archive:
        found = _members(archive)
        raw = {name: _read(archive, info) for name, info in found.items()}
    where = "uploaded probe"
    config = ProbeConfig.from_dict(parse_config_json(raw[CONFIG_FILE], f"{where}: config.json"), untrusted=True)
    try:
        tensors = load_tensors(raw[PROBE_FILE])
    except (SafetensorError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError):
        raise UserError(f"{where}: probe.safetensors is not a readable safetensors file") from None
    probe = checked_probe(
        tensors,
        config,
        where,
        expect_model_id=expect_model_id,
        expect_tokenizer_hash=expect_tokenizer_hash,
        expect_hidden_size=expect_hidden_size,
        untrusted=True,
    )
    adapter_files = [name for name in ADAPTER_MEMBERS if name in raw]
    kind_of(config.kind).check_files(adapter_files, where)  # an unknown kind is refused here too
    target = Path(destination)
    if target.exists() and any(target.iterdir()):
        raise UserError(f"{target} already exists")
    target.mkdir(parents=True, exist_ok=True)
    if adapter_files:
        (target / ADAPTER_DIR).mkdir()
        for name in adapter_files:
            (target / ADAPTER_DIR / name).write_bytes(raw[name])
    (target / PROBE_FILE).write_bytes(raw[PROBE_FILE])
    (target / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return probe, config

"""A probe version as files in memory: their names, their hashes, and the local cache folder.

The database holds every version's files (the source of truth); a host keeps a copy in a
folder named by the version's content hash, hex only, so no user text ever becomes a path.
A folder is trusted only while every file's sha256 matches. No torch and no db here: storage
hashes with it, and a worker handed the files (a Ray actor) materialises them without a database.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from core.base import settings
from core.base.errors import UserError
from core.probes.config import ADAPTER_DIR, CONFIG_FILE, PROBE_FILE

REQUIRED_FILES = (CONFIG_FILE, PROBE_FILE)
ADAPTER_FILES = (f"{ADAPTER_DIR}/adapter_config.json", f"{ADAPTER_DIR}/adapter_model.safetensors")
VERSION_FILES = REQUIRED_FILES + ADAPTER_FILES  # the only relative names a version's files may have


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(hashes: Mapping[str, str]) -> str:
    """One hash for a version from its files' sha256s (name and hash of each, in name order).

    Computable from the database's hash column alone, so a cache folder is found without
    reading any file's bytes out of the database."""
    listing = "".join(f"{name}\0{hashes[name]}\n" for name in sorted(hashes))
    return hashlib.sha256(listing.encode()).hexdigest()


def files_hash(files: Mapping[str, bytes]) -> str:
    """The content hash of a version given its files' bytes."""
    return content_hash(file_hashes(files))


def file_hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    return {name: file_sha256(data) for name, data in files.items()}


def check_names(names: Iterable[str]) -> None:
    """Refuse names outside the fixed set (so a stored name never steers a path) or a missing head/config."""
    names = set(names)
    odd = sorted(names - set(VERSION_FILES))
    if odd:
        raise UserError(f"probe files: unexpected file name(s) {', '.join(repr(n[:60]) for n in odd[:3])}")
    missing = [name for name in REQUIRED_FILES if name not in names]
    if missing:
        raise UserError(f"probe files: {' and '.join(missing)} missing")


def read_version_files(directory: str | os.PathLike) -> dict[str, bytes]:
    """The version's files found in a probe folder: head and config, and a LoRA probe's adapter files.

    Anything else in the folder (PEFT's README, say) is not part of the version."""
    folder = Path(directory)
    files = {name: (folder / name).read_bytes() for name in VERSION_FILES if (folder / name).is_file()}
    try:
        check_names(files)
    except UserError:
        raise UserError(f"not a probe folder: {folder} lacks {CONFIG_FILE} or {PROBE_FILE}") from None
    return files


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Where cache folders live: `root`, else the probes folder of the settings."""
    return Path(root) if root is not None else settings.probes_dir()


def cache_folder(hashes: Mapping[str, str], root: str | os.PathLike | None = None) -> Path:
    """The folder a version with these file hashes is kept in (it may not exist)."""
    return cache_root(root) / content_hash(hashes)


def folder_matches(folder: Path, hashes: Mapping[str, str]) -> bool:
    """True when `folder` holds exactly these version files, each with its expected sha256."""
    for name in VERSION_FILES:
        path = folder / name
        if name not in hashes:
            if path.exists():
                return False
            continue
        try:
            if not path.is_file() or file_sha256(path.read_bytes()) != hashes[name]:
                return False
        except OSError:
            return False
    return True


def cached_folder(hashes: Mapping[str, str], root: str | os.PathLike | None = None) -> Path | None:
    """The intact cache folder of a version, or None when it is missing or any file's hash differs."""
    folder = cache_folder(hashes, root)
    return folder if folder_matches(folder, hashes) else None


def materialise(files: Mapping[str, bytes], root: str | os.PathLike | None = None) -> Path:
    """The cache folder holding exactly `files` ({relative name: bytes}), written unless already intact.

    Written under a temporary name and renamed into place, so a reader never sees half a
    folder; a stale or tampered folder of the same name is replaced."""
    check_names(files)
    hashes = file_hashes(files)
    folder = cache_folder(hashes, root)
    if folder_matches(folder, hashes):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".materialise-", dir=folder.parent))
    try:
        for name, data in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        if folder.exists() or folder.is_symlink():
            _remove(folder)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not folder_matches(folder, hashes):  # another process materialised it meanwhile: fine if intact
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _remove(path: Path) -> None:
    """Move aside, then delete: the name is free at once even if deleting takes a while."""
    aside = Path(tempfile.mkdtemp(prefix=".stale-", dir=path.parent))
    os.replace(path, aside / "old")
    shutil.rmtree(aside, ignore_errors=True)

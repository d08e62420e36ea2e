"""What `datasets.load_from_disk` will read from a folder, found and checked before it reads.

A `datasets` folder names its own files: `state.json` lists the Arrow files (`_data_files`)
and `dataset_dict.json` the split folders. `load_from_disk` joins those names to the folder
as written, so `../../secret/data.arrow` read a file outside the import root, and the size
limit (measured on the folder's own tree) never saw it. Here every named file and split is
checked before anything is loaded: a plain relative name that stays inside the folder, a
regular file (or folder) whose resolved path lies inside `root` when one is given (the
import root, for paths typed into the app), and the sizes of exactly these files are what
the import limit is measured on. The JSON files themselves are read with a bounded size and
nesting, so a hostile `dataset_info.json` is one message rather than a RecursionError.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from core.base.errors import UserError

INFO_FILE = "dataset_info.json"
STATE_FILE = "state.json"
DICT_FILE = "dataset_dict.json"
MAX_JSON_BYTES = 4 * 1024 * 1024  # save_to_disk writes a few KB
MAX_DEPTH = 24  # features nest a few levels per column type
MAX_FILES = 10_000
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def files_to_read(folder: Path, shown: str, root: Path | None = None) -> list[Path]:
    """Every file `load_from_disk(folder)` opens, each checked; [] when the folder is not a
    saved dataset (the loader then says so). `shown` names the folder in messages, which
    never quote the folder's content (its JSON may hold anything)."""
    if (folder / INFO_FILE).is_file() and (folder / STATE_FILE).is_file():  # the loader's own order
        return _dataset_files(folder, shown, root)
    if not (folder / DICT_FILE).is_file():
        return []
    document = read_json(_named(folder, DICT_FILE, shown, root), shown)
    splits = document.get("splits") if isinstance(document, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) for s in splits) or len(splits) > MAX_FILES:
        raise UserError(f"{shown}: {DICT_FILE} does not list its splits")
    files = [folder / DICT_FILE]
    for split in splits:
        files += _dataset_files(_named(folder, split, shown, root, want_dir=True), shown, root)
    return files


def _dataset_files(folder: Path, shown: str, root: Path | None) -> list[Path]:
    info = _named(folder, INFO_FILE, shown, root)
    read_json(info, shown)  # bounded: the loader parses it again, recursively
    state_file = _named(folder, STATE_FILE, shown, root)
    state = read_json(state_file, shown)
    entries = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(entries, list) or len(entries) > MAX_FILES:
        raise UserError(f"{shown}: {STATE_FILE} does not list its data files")
    files = [info, state_file]
    for entry in entries:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise UserError(f"{shown}: {STATE_FILE} does not list its data files")
        files.append(_named(folder, name, shown, root))
    return files


def _named(folder: Path, name: str, shown: str, root: Path | None, *, want_dir: bool = False) -> Path:
    """`folder / name` if the name is a relative path that stays inside the folder, resolves
    inside `root` and is a regular file (or a folder); else one UserError."""
    outside = UserError(f"{shown}: a datasets folder may only name files inside itself")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not name or "\x00" in name or os.path.isabs(name) or PurePosixPath(name).is_absolute():
        raise outside
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise outside
    path = folder / name
    try:
        resolved = path.resolve()
        mode = resolved.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"{shown}: a file its metadata names is missing") from None
    except (OSError, RuntimeError, ValueError):
        raise outside from None
    if root is not None and not resolved.is_relative_to(root):
        raise outside
    if not (stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)):
        raise UserError(f"{shown}: a file its metadata names is not a regular {'folder' if want_dir else 'file'}")
    return path


def read_json(path: Path, shown: str) -> Any:
    """A metadata file parsed with bounded size and nesting; one UserError otherwise."""
    where = f"{shown}: {path.name}"
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise UserError(f"{where} is {size // 1024} KB; the limit is {MAX_JSON_BYTES // 1024} KB")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{where} is not UTF-8 text") from None
    except OSError:
        raise UserError(f"{where} cannot be read") from None
    if nesting(text) > MAX_DEPTH:
        raise UserError(f"{where} is nested too deeply (the limit is {MAX_DEPTH} levels)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise UserError(f"{where} is not valid JSON") from None


def nesting(text: str) -> int:
    """How deep the brackets of a JSON text nest, strings skipped (no parser recursion)."""
    deepest = depth = 0
    for match in _BRACKETS.finditer(_STRINGS.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest

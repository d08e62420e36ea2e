"""Exports as bytes for a browser download (contents: `db.exporter`; layouts: `core.text.export_formats`).

Nothing user-named becomes a path: the export is written under a fixed name inside a fresh
temporary folder, and the dataset and annotator names only shape the download's file name,
through the one slug helper (`core.text.filenames.file_slug`).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from core.text.filenames import file_slug
from db.exporter import export_file

SUFFIX = {"jsonl": ".jsonl", "conll": ".conll", "parquet": ".parquet", "datasets": ".zip"}
MIME = {
    "jsonl": "application/jsonl",
    "conll": "text/plain",
    "parquet": "application/vnd.apache.parquet",
    "datasets": "application/zip",
}
MAX_NAME_LENGTH = 120


def download_name(dataset: str, which: str, annotator: str | None = None) -> str:
    """The file name (without suffix) a download offers: `<dataset>-<which>[-<annotator>]`, slugged."""
    parts = [file_slug(dataset, fallback="dataset"), file_slug(which, fallback="export")]
    if annotator:
        parts.append(file_slug(annotator, fallback="annotator"))
    return file_slug("-".join(parts), fallback="export", max_length=MAX_NAME_LENGTH)


def export_bytes(
    session: Session, dataset: str, *, format: str = "jsonl", which: str = "gold", annotator: str | None = None
) -> tuple[bytes, str, str, int]:
    """(content, file name, mime type, generations). A `datasets` folder comes zipped."""
    name = download_name(dataset, which, annotator)
    with tempfile.TemporaryDirectory(prefix="probelens-export-") as tmp:
        target = Path(tmp) / ("export" if format == "datasets" else "export" + SUFFIX.get(format, ""))
        count = export_file(session, dataset, target, format=format, which=which, annotator=annotator)
        if format != "datasets":
            return target.read_bytes(), name + SUFFIX[format], MIME[format], count
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    archive.write(path, arcname=str(PurePosixPath(name, *path.relative_to(target).parts)))
        return buffer.getvalue(), name + ".zip", MIME[format], count

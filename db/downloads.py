"""Exports as bytes for a browser download (the file formats are db/exporter.py's)."""
from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy.orm import Session

from db.exporter import export_file

SUFFIX = {"jsonl": ".jsonl", "conll": ".conll", "parquet": ".parquet", "datasets": ".zip"}
MIME = {"jsonl": "application/jsonl", "conll": "text/plain", "parquet": "application/vnd.apache.parquet",
        "datasets": "application/zip"}


def export_bytes(session: Session, dataset: str, *, format: str = "jsonl", which: str = "gold",
                 annotator: str | None = None) -> tuple[bytes, str, str, int]:
    """(content, file name, mime type, generations). A `datasets` folder comes zipped."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset) or "dataset"
    name = f"{safe}-{which}{'-' + annotator if annotator else ''}"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / (name + ("" if format == "datasets" else SUFFIX[format]))
        count = export_file(session, dataset, target, format=format, which=which, annotator=annotator)
        if format != "datasets":
            return target.read_bytes(), target.name, MIME[format], count
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(target.rglob("*")):
                if path.is_file():
                    archive.write(path, arcname=str(Path(name) / path.relative_to(target)))
        return buffer.getvalue(), name + ".zip", MIME[format], count

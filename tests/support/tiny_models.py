"""Variants of the conftest's tiny random model, for tests that need a different config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def with_context(model_dir: Path, target: Path, positions: int) -> Path:
    """A copy of a saved model whose config reads `positions` tokens of context (the tiny model's
    1,024 cannot hold a judge's prompt plus its token limit; the weights are the same)."""
    shutil.copytree(model_dir, target)
    config_file = target / "config.json"
    config = json.loads(config_file.read_text())
    config["max_position_embeddings"] = positions
    config_file.write_text(json.dumps(config))
    return target

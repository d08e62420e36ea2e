"""Cold (de-quantise GGUF, write safetensors) vs warm (read the cache) load of the embedded model.

Run: .venv/bin/python benchmarks/model_load.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBELENS_MODEL_CACHE_DIR"] = tmp
        import core.engine.model as model  # imported after the env var so nothing is cached yet

        import_started = time.perf_counter()
        import transformers  # noqa: F401  (count the import once, outside both loads)

        imports = time.perf_counter() - import_started
        started = time.perf_counter()
        model.load_model(None)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        lm = model.load_model(None)
        warm = time.perf_counter() - started
    print(f"model={lm.model_id} layers={lm.num_layers} hidden={lm.hidden_size}")
    print(f"import_transformers_s={imports:.2f}")
    print(f"cold_load_s={cold:.2f}")
    print(f"warm_load_s={warm:.2f}")
    print(f"ratio_warm_over_cold={warm / cold:.3f}")


if __name__ == "__main__":
    main()

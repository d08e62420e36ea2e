"""benchmarks/gpu_check.py, the script for a lent GPU machine: it imports only what that machine
has (torch, transformers with its tokenizers, safetensors, peft, numpy) and runs, here on the
CPU with --size tiny in bfloat16, every stage with every check passing."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ON_THE_GPU_MACHINE = {"torch", "transformers", "tokenizers", "safetensors", "peft", "numpy"}
PURE_CORE = ("core.base.", "core.text.", "core.engine.", "core.probes.")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_script_imports_only_the_gpu_machines_packages_and_the_pure_core():
    imported = _imports(SCRIPT)
    ours = {name for name in imported if name.split(".")[0] == "core"}
    others = {name.split(".")[0] for name in imported - ours} - set(sys.stdlib_module_names)
    assert others <= ON_THE_GPU_MACHINE, others - ON_THE_GPU_MACHINE
    assert ours and all(name.startswith(PURE_CORE) for name in ours), ours


# Runs the script as on the GPU machine: the packages it lacks are hidden from imports (the path
# finder does not see them, so `import` fails and transformers' availability checks say "absent").
AS_ON_THE_GPU_MACHINE = """
import importlib.machinery, runpy, sys
hidden = set(sys.argv[1].split(","))
class WithoutThem:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in hidden:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
    @staticmethod
    def invalidate_caches():
        importlib.machinery.PathFinder.invalidate_caches()
    @staticmethod
    def find_distributions(*args, **kwargs):  # importlib.metadata asks the path finder too
        return importlib.machinery.PathFinder.find_distributions(*args, **kwargs)
sys.meta_path[:] = [WithoutThem if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
NOT_THERE = [
    "sqlalchemy",
    "alembic",
    "psycopg",
    "streamlit",
    "pandas",
    "pyarrow",
    "sklearn",
    "scipy",
    "plotly",
    "statsmodels",
    "krippendorff",
    "countryinfo",
    "datasets",
    "gguf",
    "db",
    "pages",
]


def test_the_tiny_check_runs_on_the_cpu_in_bfloat16_and_passes(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            AS_ON_THE_GPU_MACHINE,
            ",".join(NOT_THERE),
            str(SCRIPT),
            "--size",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["passed"] and "ALL PASS" in done.stdout
    # the whole import closure ran without sqlalchemy, pandas, scikit-learn, ... (hidden above)
    assert data["extras_imported"] == []
    assert all(
        name == "core" or name.startswith(PURE_CORE) or name in {"core.base", "core.text", "core.engine", "core.probes"}
        for name in data["core_modules"]
    )
    names = {check["name"] for check in data["checks"]}
    assert {
        "weights dtype",
        "stream = teacher forcing",
        "batched = teacher forcing",
        "extraction cache",
        "extraction = batched scores",
        "lora trains",
    } <= names
    stages = data["stages"]
    assert stages["build"]["dtype"] == "torch.bfloat16" and stages["build"]["tolerance"] == 0.05
    for stage in ("stream", "teacher_forcing", "batched", "lora"):
        assert stages[stage]["tokens_per_s"] > 0, stage
    assert stages["extraction"]["stored_as"] == "torch.bfloat16"
    assert stages["teacher_forcing"]["max_score_diff"] <= 0.05
    assert data["card"] is None and data["device"] == "cpu"  # no GPU here; on one, the card's name
    assert not any(Path(tmp_path).glob("data"))  # nothing written beside the caller but --out

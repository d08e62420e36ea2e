"""Ray: connect to the cluster that `PROBELENS_RAY_ADDRESS` names, and the placement rules.

Only used when that setting is present; the local subprocess worker stays the default that
needs nothing to start. Ray is imported lazily, so the app and the local worker never pay its
import. The run's database row stays the single source of truth (status, progress,
heartbeat, cancel): a Ray task runs exactly the worker code (`runs.execute_run`) that a
local worker process runs, so the pages do not change. The launcher submits the worker's Ray
entry (`worker.run_in_ray_worker`) by reference.

A Ray cluster runs the code of anyone who reaches it, so `settings.ray_address()` refuses an
address other than `local` or a loopback host unless Ray's token authentication is configured
(`RAY_AUTH_MODE=token` and a token): see the README's Security section.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.base import settings
from core.base.errors import UserError
from db.models import RunKind

ROOT = Path(__file__).resolve().parents[2]
#: Settings a Ray worker gets from the process that submits: the ones that say what to compute.
#: Folders and the device are not sent: a worker on another machine keeps its caches (and its
#: Hugging Face cache) on its own disk and picks its own device (its `ray start` environment).
FORWARDED_SETTINGS = (
    "PROBELENS_MODEL",
    "PROBELENS_ALLOW_DOWNLOADS",
    "PROBELENS_KV_CACHE_MB",
    "PROBELENS_WORKER_STALE_SECONDS",
)
#: The code travels to the workers as Ray's working_dir, without what is not code.
CODE_EXCLUDES = [
    ".venv/",
    "data/",
    ".git/",
    "tests/e2e/artifacts/",
    "**/__pycache__/",
    "*.pyc",
    ".hypothesis/",
    ".pytest_cache/",
    ".whl/",
    ".gl/",
]
#: What a bulk run's actors may not do: restart after a death (the run fails instead, cleanly).
BULK_KINDS = (RunKind.GENERATE, RunKind.RESCORE)


def enabled() -> bool:
    """Whether runs go to Ray; a non-local address without Ray's token authentication is refused
    (one UserError) before anything is written."""
    return settings.ray_address() is not None


def runtime_env() -> dict[str, Any]:
    env_vars = settings.present(FORWARDED_SETTINGS)
    return {"working_dir": str(ROOT), "excludes": CODE_EXCLUDES, "env_vars": env_vars}


def connect(address: str | None = None) -> None:
    """Join the cluster once per process (`local`: start one in this process, as the tests do)."""
    import ray

    if ray.is_initialized():
        return
    address = address or settings.ray_address()
    if not address:
        raise UserError("PROBELENS_RAY_ADDRESS is not set")
    try:
        if address == "local":
            ray.init(runtime_env=runtime_env(), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False)
    except ConnectionError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


@dataclass(frozen=True)
class ClusterShape:
    """What placement needs to know: GPUs in all, and the CPUs of the smallest node that has any
    (a head started with `--num-cpus=0` only coordinates)."""

    gpus: int
    node_cpus: int
    nodes: int


def cluster_shape() -> ClusterShape:
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = [int(r.get("CPU", 0)) for r in nodes if int(r.get("CPU", 0)) > 0] or [1]
    gpus = sum(int(r.get("GPU", 0)) for r in nodes)
    return ClusterShape(gpus=gpus, node_cpus=min(cpus), nodes=max(1, len(cpus)))


def task_resources(kind: str, shape: ClusterShape) -> dict[str, Any]:
    """A run's own task: a bulk run only drives its pipeline (its replicas hold the resources);
    a retrain or demo seed holds the model itself, on one GPU where there are GPUs."""
    if kind in BULK_KINDS:
        return {"num_cpus": 0}
    if kind == RunKind.LABEL:  # waits on an external judge: no model, no GPU
        return {"num_cpus": 1}
    if shape.gpus:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": shape.node_cpus}


def replica_resources(shape: ClusterShape) -> tuple[int, dict[str, Any]]:
    """(replicas, resources of each) for a bulk pipeline: one model per GPU, else one per CPU node
    holding all its CPUs (PyTorch uses them all; two replicas on two cores only fight)."""
    if shape.gpus:
        return shape.gpus, {"num_gpus": 1, "num_cpus": 1}
    return shape.nodes, {"num_cpus": shape.node_cpus}


def worker_defaults() -> None:
    """In a Ray worker: caches on this machine's disk when the worker's own environment says nothing."""
    home = Path.home() / ".cache" / "probelens"
    os.environ.setdefault("PROBELENS_CACHE_DIR", str(home))
    os.environ.setdefault("PROBELENS_PROBES_DIR", str(home / "probes"))

"""Where runs go on a Ray cluster (pure rules, no cluster needed): resources per run kind and per
replica, shard sizes, what a worker inherits, and the setting that switches Ray on."""

from __future__ import annotations

import pytest

from core.orchestration.ray_cluster import (
    FORWARDED_SETTINGS,
    ClusterShape,
    enabled,
    replica_resources,
    runtime_env,
    task_resources,
)
from core.orchestration.ray_pipelines import SHARD_BATCHES, shard_size

GPU_CLUSTER = ClusterShape(gpus=4, node_cpus=16, nodes=2)
CPU_CLUSTER = ClusterShape(gpus=0, node_cpus=2, nodes=1)


def test_a_retrain_holds_one_gpu_and_a_bulk_run_only_drives_its_replicas():
    assert task_resources("retrain", GPU_CLUSTER) == {"num_gpus": 1, "num_cpus": 1}
    assert task_resources("seed", GPU_CLUSTER)["num_gpus"] == 1
    assert task_resources("retrain", CPU_CLUSTER) == {"num_cpus": 2}  # PyTorch uses the node's cores
    for kind in ("generate", "rescore"):
        assert task_resources(kind, GPU_CLUSTER) == {"num_cpus": 0}


def test_one_replica_per_gpu_else_one_per_cpu_node():
    assert replica_resources(GPU_CLUSTER) == (4, {"num_gpus": 1, "num_cpus": 1})
    assert replica_resources(CPU_CLUSTER) == (1, {"num_cpus": 2})
    assert replica_resources(ClusterShape(gpus=0, node_cpus=8, nodes=3)) == (3, {"num_cpus": 8})


@pytest.mark.parametrize(
    ("total", "replicas", "batch", "expected"),
    [
        (10, 1, 32, 32),  # a small job: one engine batch per shard
        (256, 1, 32, 32),  # eight shards of one batch each
        (100_000, 4, 32, SHARD_BATCHES * 32),  # a large job: capped, so progress still moves
        (2_000, 2, 16, 4 * 16),  # 125 per shard would be eight per replica: capped at four batches
    ],
)
def test_shard_sizes(total, replicas, batch, expected):
    assert shard_size(total, replicas, batch) == expected


def test_workers_get_what_to_compute_but_not_this_machines_folders(monkeypatch):
    monkeypatch.setenv("PROBELENS_MODEL", "/models/llama")
    monkeypatch.setenv("PROBELENS_CACHE_DIR", "/srv/probelens/cache")
    monkeypatch.setenv("PROBELENS_DEVICE", "cpu")
    env = runtime_env()
    assert env["env_vars"]["PROBELENS_MODEL"] == "/models/llama"
    assert "PROBELENS_CACHE_DIR" not in env["env_vars"] and "PROBELENS_DEVICE" not in env["env_vars"]
    assert set(env["env_vars"]) <= set(FORWARDED_SETTINGS)
    assert ".venv/" in env["excludes"] and "data/" in env["excludes"]  # code travels, not data


def test_ray_is_used_only_when_the_address_is_set(monkeypatch):
    monkeypatch.delenv("PROBELENS_RAY_ADDRESS", raising=False)
    assert not enabled()
    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", "  ")
    assert not enabled()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # a remote cluster needs Ray's token authentication
    monkeypatch.setenv("RAY_AUTH_TOKEN", "a-cluster-token")
    monkeypatch.setenv("PROBELENS_RAY_ADDRESS", "ray://head:10001")
    assert enabled()

"""`python -m core serve --ray`: the same FastAPI app on Ray Serve replicas behind Ray's HTTP proxy.

Each replica is a Ray actor that builds the app exactly as the plain service does
(`app.build_app`): its own model, its own shared batched engine, its own probe holder following
the active version. One replica per GPU where the cluster has GPUs, else `--replicas` CPU
replicas. Ray Serve routes requests among them and restarts a replica that dies.

The replicas get the database URL without its password (actor arguments are visible on the
cluster), as run tasks do; each takes the password from its own environment. Ray is imported
only here, so the plain service never pays for it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any

from core.base import settings
from core.base.errors import UserError
from core.orchestration import ray_cluster
from core.orchestration.serve.app import LOG_FORMAT, Limits

APP_NAME = "probelens"
DEPLOYMENT_NAME = "ProbeLensReplica"
DEFAULT_CPU_REPLICAS = 2
#: Requests one replica takes at once: its engine batches them, so this is the batch's ceiling,
#: not a thread count (Ray Serve's default of 5 would queue what the engine could batch).
MAX_ONGOING_REQUESTS = 64

log = logging.getLogger("probelens.serve")


@dataclass(frozen=True)
class ReplicaPlan:
    """How many replicas, and what each holds."""

    replicas: int
    resources: dict[str, Any]


def replica_plan(shape: ray_cluster.ClusterShape, cpu_replicas: int | None) -> ReplicaPlan:
    """One replica per GPU (each holding it), else `cpu_replicas` replicas of one CPU each."""
    if shape.gpus:
        return ReplicaPlan(shape.gpus, {"num_gpus": 1, "num_cpus": 1})
    count = DEFAULT_CPU_REPLICAS if cpu_replicas is None else cpu_replicas
    if count < 1:
        raise UserError(f"--replicas must be at least 1, got {count}")
    return ReplicaPlan(count, {"num_cpus": 1})


class ProbeLensReplica:
    """One Ray Serve replica: the constructor only keeps the arguments; Ray Serve calls
    `__serve_build_asgi_app__` once the actor is up, which loads the model and the probe."""

    def __init__(self, database_url: str, model: str, probe_spec: str, limits: Limits, refresh_seconds: float) -> None:
        self.database_url = database_url
        self.model = model
        self.probe_spec = probe_spec
        self.limits = limits
        self.refresh_seconds = refresh_seconds

    def __serve_build_asgi_app__(self) -> Any:
        from core.orchestration.serve.app import build_app
        from db import open_database
        from db.credentials import with_local_password

        ray_cluster.worker_defaults()
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        database = open_database(with_local_password(self.database_url), migrate=False)
        app, _probes = build_app(database, self.model, self.probe_spec, self.limits, self.refresh_seconds)
        return app


def deploy(
    database_url: str,
    model: str,
    probe_spec: str,
    *,
    host: str,
    port: int,
    cpu_replicas: int | None,
    limits: Limits,
    refresh_seconds: float,
) -> ReplicaPlan:
    """Deploy on the Ray this process is connected to and wait until every replica answers."""
    from ray import serve

    plan = replica_plan(ray_cluster.cluster_shape(), cpu_replicas)
    deployment = serve.deployment(
        name=DEPLOYMENT_NAME,
        num_replicas=plan.replicas,
        ray_actor_options=plan.resources,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
    )(serve.ingress()(ProbeLensReplica))
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        deployment.bind(database_url, model, probe_spec, limits, refresh_seconds),
        name=APP_NAME,
        route_prefix="/",
    )
    return plan


def replica_actor_names() -> list[tuple[str, str]]:
    """(name, namespace) of this app's replica actors, e.g. to kill one in a test."""
    import ray

    return [
        (actor["name"], actor["namespace"])
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith("SERVE_REPLICA::") and f"{APP_NAME}#{DEPLOYMENT_NAME}" in actor["name"]
    ]


def serve_on_ray(args: argparse.Namespace) -> int:
    """The CLI: check the probe against the model here (one message, nothing deployed), connect
    to the cluster (or start a Ray in this process), deploy, and keep serving until Ctrl-C."""
    from ray import serve

    from core.engine.model import lazy_model
    from core.orchestration.serve.probe import ProbeHolder
    from db import open_database
    from db.credentials import without_password

    database = open_database()
    lm = lazy_model(args.model)  # the model's facts (from the cache when known), enough to check a probe
    probes = ProbeHolder(database, lm, args.probe, settings.serve_probe_refresh_seconds())
    _probe, version = probes.current()
    ray_cluster.connect(settings.ray_address() or "local")
    plan = deploy(
        without_password(database.full_url),
        lm.model_id,
        args.probe,
        host=args.host,
        port=args.port,
        cpu_replicas=args.replicas,
        limits=Limits.from_settings(),
        refresh_seconds=settings.serve_probe_refresh_seconds(),
    )
    scored = f"probe v{version}" if version is not None else "no probe (answers unscored)"
    print(
        f"serving {lm.model_id} with {scored} on http://{args.host}:{args.port} "
        f"({plan.replicas} Ray Serve replicas, each {plan.resources})",
        file=sys.stderr,
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
    return 0

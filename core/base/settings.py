"""Every setting ProbeLens reads from the environment, in one place.

Functions, not constants: tests and the worker change the environment at run time, and a
value read at import would go stale. `ENV_VARS` is the list the README documents (a test
checks that the README names each one).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.base.errors import UserError

ENV_VARS: dict[str, str] = {
    "DATABASE_URL": "SQLAlchemy URL of the database (default: SQLite at data/probelens.db)",
    "PROBELENS_MODEL": "model id or local path (default: the embedded SmolLM2-135M-Instruct)",
    "PROBELENS_ALLOW_DOWNLOADS": "1 lets transformers download a model from a hub (default: off)",
    "PROBELENS_CACHE_DIR": "activation cache, worker logs, model facts (default: data/cache)",
    "PROBELENS_MODEL_CACHE_DIR": "where the de-quantised embedded model is kept (default: inside the cache dir)",
    "PROBELENS_PROBES_DIR": "probe version folders (default: data/probes)",
    "PROBELENS_DEMO_SIZE": "answers in the first-run demo (default: 200)",
    "PROBELENS_SEED_DEMO": "0 turns the first-run demo seed off (default: 1)",
    "PROBELENS_MAX_IMPORT_MB": "largest import file accepted (default: 200)",
    "PROBELENS_IMPORT_ROOT": "the only server folder the Data page imports from by path (default: data/imports)",
    "PROBELENS_ADMIN_PASSWORD": "creates the admin account on first start without the form",
    "PROBELENS_NEW_PASSWORD": "password for `users add` / `users reset-password` without a prompt",
    "PROBELENS_WORKER_IDLE_SECONDS": "how long a worker stays warm for the next run (default: 300)",
    "PROBELENS_WORKER_STALE_SECONDS": "a run without a heartbeat for this long is marked failed (default: 60)",
    "PROBELENS_SESSION_IDLE_HOURS": "a sign-in unused for this long ends (default: 12)",
    "PROBELENS_KV_CACHE_MB": "KV-cache memory that sets the automatic generation batch size (default: 512)",
    "PROBELENS_MAX_PROMPT_TOKENS": "longest prompt (question and earlier turns) a model is asked to answer or score, "
    "in tokens; prompt plus answer must also fit the model's context (default: 4096)",
    "PROBELENS_PREFILL_CHUNK_TOKENS": "most prompt tokens the batched engine reads in one step between other rows' "
    "tokens, so a long prompt cannot stall other answers (default: 256)",
    "PROBELENS_DEVICE": "where models run: auto (a GPU when there is one), cpu, cuda, cuda:N (default: auto)",
    "PROBELENS_RAY_ADDRESS": "runs go to this Ray cluster (auto, ray://host:port, or local for an in-process Ray) "
    "instead of a local worker process (default: unset); an address other than local or a loopback host "
    "needs Ray's token authentication",
    "RAY_AUTH_MODE": "Ray's own setting: token turns on Ray's token authentication, required for a "
    "PROBELENS_RAY_ADDRESS other than local or a loopback host (default: unset)",
    "RAY_AUTH_TOKEN": "Ray's own setting: the cluster's token (else RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token)",
    "RAY_AUTH_TOKEN_PATH": "Ray's own setting: a file holding the cluster's token",
    "PROBELENS_SERVE_MAX_TOKENS": "the serving API's cap on max_tokens, also its default (default: 1024)",
    "PROBELENS_SERVE_MAX_PROMPT_TOKENS": "the serving API's longest prompt, in tokens (default: 4096)",
    "PROBELENS_SERVE_MAX_IN_FLIGHT": "the serving API's requests in flight per key; more get 429 (default: 4)",
    "PROBELENS_SERVE_MAX_BODY_KB": "the serving API's largest request body (default: 512)",
    "PROBELENS_SERVE_PROBE_REFRESH_SECONDS": "how often the serving API re-reads the active probe version (default: 3)",
    "PROBELENS_JUDGE_ATTEMPTS": "tries of one LLM-judge request that gets 429, 5xx, a timeout or no connection, "
    "waiting out Retry-After or a growing backoff between them (default: 4)",
    "PROBELENS_JUDGE_MAX_WAIT_SECONDS": "the longest wait between two tries of a judge request, whatever "
    "Retry-After says (default: 60)",
}


def _get(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _float(name: str, default: float) -> float:
    try:
        return float(_get(name, str(default)))
    except ValueError:
        return default


def database_url() -> str:
    return _get("DATABASE_URL") or f"sqlite:///{Path.cwd() / 'data' / 'probelens.db'}"


def database_url_if_set() -> str | None:
    """`DATABASE_URL` as this process's environment gives it (a Ray worker reads its password there)."""
    return _get("DATABASE_URL").strip() or None


def model_id() -> str:
    return _get("PROBELENS_MODEL")


def allow_downloads() -> bool:
    return _get("PROBELENS_ALLOW_DOWNLOADS") == "1"


def cache_dir() -> Path:
    return Path(_get("PROBELENS_CACHE_DIR") or Path.cwd() / "data" / "cache")


def model_cache_dir() -> Path | None:
    value = _get("PROBELENS_MODEL_CACHE_DIR")
    return Path(value) if value else None


def probes_dir() -> Path:
    return Path(_get("PROBELENS_PROBES_DIR") or Path.cwd() / "data" / "probes")


def demo_size() -> int:
    return int(_float("PROBELENS_DEMO_SIZE", 200))


def seed_demo_enabled() -> bool:
    return _get("PROBELENS_SEED_DEMO", "1") != "0"


def max_import_mb_raw() -> str:
    return _get("PROBELENS_MAX_IMPORT_MB").strip()


def import_root() -> Path:
    return Path(_get("PROBELENS_IMPORT_ROOT") or Path.cwd() / "data" / "imports")


def admin_password() -> str | None:
    return _get("PROBELENS_ADMIN_PASSWORD") or None


def new_password() -> str | None:
    return _get("PROBELENS_NEW_PASSWORD") or None


def worker_idle_seconds() -> float:
    return max(0.0, _float("PROBELENS_WORKER_IDLE_SECONDS", 300.0))


def worker_stale_seconds() -> float:
    return max(1.0, _float("PROBELENS_WORKER_STALE_SECONDS", 60.0))


def session_idle_hours() -> float:
    return max(0.01, _float("PROBELENS_SESSION_IDLE_HOURS", 12.0))


def kv_cache_mb() -> int:
    return max(1, int(_float("PROBELENS_KV_CACHE_MB", 512)))


def _positive_int(name: str, default: int) -> int:
    """A whole number of at least 1, else one clear UserError naming the variable."""
    raw = _get(name).strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"{name} must be a whole number of at least 1, got {raw[:40]!r}")
    return int(raw)


def max_prompt_tokens() -> int:
    """PROBELENS_MAX_PROMPT_TOKENS: the longest prompt accepted, in tokens (default 4096)."""
    return _positive_int("PROBELENS_MAX_PROMPT_TOKENS", 4096)


def prefill_chunk_tokens() -> int:
    """PROBELENS_PREFILL_CHUNK_TOKENS: prompt tokens the batched engine prefills per step (default 256)."""
    return _positive_int("PROBELENS_PREFILL_CHUNK_TOKENS", 256)


_DEVICE = re.compile(r"auto|cpu|cuda|cuda:\d{1,3}")


def check_device(value: str) -> str:
    """A device setting in its one spelling (auto, cpu, cuda, cuda:N), else one clear UserError.

    Only the spelling is checked here (no torch in this module); whether a GPU is there is
    `core.engine.model.resolve_device`'s question."""
    text = value.strip().lower()
    if not _DEVICE.fullmatch(text):
        raise UserError(
            f"device must be auto, cpu, cuda or cuda:N (N a GPU number), got {value.strip()!r} "
            "(--device / PROBELENS_DEVICE)"
        )
    return text


def device() -> str:
    """PROBELENS_DEVICE, checked (default auto: a GPU when there is one)."""
    return check_device(_get("PROBELENS_DEVICE", "auto").strip() or "auto")


def set_device(value: str) -> str:
    """Set PROBELENS_DEVICE for this process and the workers it starts (the CLI's `--device`)."""
    os.environ["PROBELENS_DEVICE"] = checked = check_device(value)
    return checked


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def _ray_host(address: str) -> str:
    """The host of `ray://host:port`, `host:port` or `host` (`auto` has none: it finds the
    cluster started on this machine, which listens on the network)."""
    rest = address.split("://", 1)[-1].split("/", 1)[0]
    if rest.startswith("["):
        return rest[: rest.find("]") + 1]
    return rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest


def ray_token_configured() -> bool:
    """Whether Ray's token authentication is on for this process: `RAY_AUTH_MODE=token` and a
    token in `RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`."""
    if _get("RAY_AUTH_MODE").strip().lower() != "token":
        return False
    if _get("RAY_AUTH_TOKEN").strip():
        return True
    path = Path(_get("RAY_AUTH_TOKEN_PATH").strip() or Path.home() / ".ray" / "auth_token")
    try:
        return bool(path.read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


def ray_address() -> str | None:
    """The Ray cluster runs go to (None: local worker processes).

    A cluster runs the code of anyone who reaches it, so any address but `local` (a Ray inside
    this process) or a loopback host is refused unless Ray's token authentication is configured."""
    address = _get("PROBELENS_RAY_ADDRESS").strip() or None
    if address is None or address == "local" or _ray_host(address).lower() in LOOPBACK_HOSTS:
        return address
    if not ray_token_configured():
        raise UserError(
            f"PROBELENS_RAY_ADDRESS={address!r} needs Ray's token authentication: a Ray cluster runs the "
            "code of anyone who reaches it. Set RAY_AUTH_MODE=token and the cluster's token "
            "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) on the app and every node"
        )
    return address


def serve_max_tokens() -> int:
    return max(1, min(4096, int(_float("PROBELENS_SERVE_MAX_TOKENS", 1024))))


def serve_max_prompt_tokens() -> int:
    return max(1, int(_float("PROBELENS_SERVE_MAX_PROMPT_TOKENS", 4096)))


def serve_max_in_flight() -> int:
    return max(1, int(_float("PROBELENS_SERVE_MAX_IN_FLIGHT", 4)))


def serve_max_body_bytes() -> int:
    return max(1, int(_float("PROBELENS_SERVE_MAX_BODY_KB", 512))) * 1024


def serve_probe_refresh_seconds() -> float:
    return max(0.2, _float("PROBELENS_SERVE_PROBE_REFRESH_SECONDS", 3.0))


def present(names: tuple[str, ...]) -> dict[str, str]:
    """Those of `names` that are set, with their values (what a Ray worker is handed)."""
    return {name: os.environ[name] for name in names if name in os.environ}


def judge_attempts() -> int:
    return _positive_int("PROBELENS_JUDGE_ATTEMPTS", 4)


def judge_max_wait_seconds() -> float:
    return max(0.0, _float("PROBELENS_JUDGE_MAX_WAIT_SECONDS", 60.0))


def judge_api_key(variable: str | None, judge: str) -> str:
    """The API key of a judge, from the environment variable its configuration names (the key
    itself is never stored). A judge without one (a local server) gets a placeholder."""
    if not variable:
        return "none"
    value = _get(variable).strip()
    if not value:
        raise UserError(f"judge '{judge}' reads its API key from {variable}, which is not set on this server")
    return value

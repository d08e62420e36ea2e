"""Background jobs with progress and cancellation, shared by every page of one server process.

A job is a function `fn(progress, cancel) -> result` run on a daemon thread. Its state
(stage, done/total, message, error, result) can be read from any session, so a page can
be closed and reopened while the job runs. `exclusive` kinds run one at a time.
"""
from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.base.errors import UserError
from core.base.progress import CancelToken, Cancelled

JobFn = Callable[[Callable[..., None], CancelToken], Any]


@dataclass
class Job:
    id: int
    kind: str
    label: str
    status: str = "running"  # running / succeeded / failed / cancelled
    stage: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    error: str | None = None
    result: Any = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    cancel_token: CancelToken = field(default_factory=CancelToken, repr=False)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Remaining time if the current stage keeps its pace so far."""
        if not self.running or not self.done or not self.total:
            return None
        elapsed = time.time() - self.started_at
        return elapsed * (self.total - self.done) / self.done

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def progress(self, stage: str, done: int, total: int, message: str = "") -> None:
        self.stage, self.done, self.total, self.message = stage, done, total, message


class JobRunner:
    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, kind: str, fn: JobFn, *, label: str = "", exclusive: bool = True) -> Job:
        with self._lock:
            if exclusive and any(j.kind == kind and j.running for j in self._jobs.values()):
                raise UserError(f"a {kind} job is already running; wait for it or cancel it")
            job = Job(next(self._ids), kind, label or kind)
            self._jobs[job.id] = job
        thread = threading.Thread(target=self._run, args=(job, fn), name=f"job-{kind}-{job.id}", daemon=True)
        thread.start()
        return job

    @staticmethod
    def _run(job: Job, fn: JobFn) -> None:
        try:
            job.result = fn(job.progress, job.cancel_token)
            job.status = "cancelled" if job.cancel_token.cancelled else "succeeded"
        except Cancelled:
            job.status = "cancelled"
        except UserError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a job must never die silently
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            job.finished_at = time.time()

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def latest(self, kind: str) -> Job | None:
        jobs = [j for j in self._jobs.values() if j.kind == kind]
        return max(jobs, key=lambda j: j.id) if jobs else None

    def wait(self, job: Job, timeout: float | None = None) -> Job:
        deadline = None if timeout is None else time.time() + timeout
        while job.running and (deadline is None or time.time() < deadline):
            time.sleep(0.05)
        return job


RUNNER = JobRunner()

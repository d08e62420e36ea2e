"""The one run-progress widget: a live bar per run kind, a cancel button, and the outcome.

Used by Data (batch runs), Probes (retrain and re-score) and the sidebar (the demo seed). It
reads the run rows every second while a run is active; cancelling goes through
`runs.cancel_run`, which re-checks the person in its own transaction and logs them.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.base.errors import UserError
from core.base.progress import StagedProgress
from core.orchestration.actions import runs
from core.text.markdown import md_escape
from pages.common import SignedIn, database

Run = dict[str, Any]


@dataclass(frozen=True)
class RunView:
    """How one kind of run reads in the widget."""

    progress: Callable[[Run], str]  # the bar's text while it runs
    finished: Callable[[Run, bool], None]  # draws a finished run (and whether this page saw it run)
    cancel: Callable[[Run], str] | None = None  # the cancel button's label; None: no button
    cancel_key: Callable[[Run], str] = lambda run: f"cancel-{run['id']}"
    cancelling: str = "Cancel requested; stopping at the next checkpoint…"


def progress_bar(text: str, shares: dict[str, tuple[float, float]]) -> tuple[Any, StagedProgress]:
    """A bar for work done while the page waits (Inspect's layer sweep): one fraction over the
    work's stages that never goes backwards; returns the bar (to empty) and the ProgressFn."""
    bar = st.progress(0.0, text=text)

    class OnBar(StagedProgress):
        def __call__(self, stage: str, done: int, total: int, message: str = "") -> None:
            super().__call__(stage, done, total, message)
            bar.progress(min(1.0, self.fraction), text=self.message)

    return bar, OnBar(shares)


def run_progress(user: SignedIn, views: dict[str, RunView], *, where: Any = None, rerun_when_done: bool = True) -> None:
    """Live progress of the newest run of each kind in `views`; polls only while one is active.
    With `rerun_when_done`, the whole page reruns once the runs it saw active have ended, so
    its tables catch up."""
    kinds = tuple(views)
    first = runs.latest_runs(database(), kinds)
    was_active = {k for k, r in first.items() if r["status"] in runs.ACTIVE}
    seen: set[int] = st.session_state.setdefault("run-progress-seen-active", set())
    seen.update(r["id"] for r in first.values() if r["status"] in runs.ACTIVE)

    @st.fragment(run_every=1.0 if was_active else None)
    def box() -> None:
        now = runs.latest_runs(database(), kinds)
        if rerun_when_done and was_active and not any(now[k]["status"] in runs.ACTIVE for k in was_active if k in now):
            # The whole page draws the outcome once, beside tables that caught up: drawing it
            # here too would leave two copies on screen until that rerun replaced this one.
            st.rerun()
        with where if where is not None else nullcontext():
            for kind, run in now.items():
                view = views[kind]
                if run["status"] in runs.ACTIVE:
                    st.progress(min(1.0, max(0.0, run["progress"] or 0.0)), text=view.progress(run))
                    if run["cancel_requested"]:
                        st.caption(view.cancelling)
                    elif view.cancel is not None and st.button(view.cancel(run), key=view.cancel_key(run)):
                        try:
                            runs.cancel_run(database(), user, run["id"])
                        except UserError as exc:
                            st.error(md_escape(str(exc)))
                        else:
                            st.rerun(scope="fragment")
                else:
                    view.finished(run, kind in was_active or run["id"] in seen)

    box()


def seed_status(user: SignedIn) -> None:
    """A small live progress box in the sidebar while the demo seed runs (read from its run row)."""
    if runs.seed_run(database(), user) is None:
        return

    def finished(run: Run, seen_running: bool) -> None:
        if run["status"] in ("failed", "cancelled") and runs.seed_needed(database()):
            st.warning(f"Demo seeding {run['status']}" + (f": {md_escape(run['error'])}" if run["error"] else "."))
            if user.role == "admin" and st.button("Start demo seeding again", key="retry-seed"):
                try:
                    runs.restart_seed(database(), user)
                except UserError as exc:
                    st.error(md_escape(str(exc)))
                st.rerun()
        elif run["status"] == "succeeded" and seen_running and not st.session_state.get("seed-announced"):
            st.session_state["seed-announced"] = True  # this session saw it run: say once that it is done
            st.success("Demo data and a demo probe are ready.")

    view = RunView(
        progress=lambda run: (
            f"Preparing demo data: {md_escape(runs.seed_progress_label(run['stage'], run['message']))}"
        ),
        finished=finished,
        cancel=(lambda _run: "Cancel demo seeding") if user.role == "admin" else None,
        cancel_key=lambda _run: "cancel-seed",
    )
    run_progress(user, {"seed": view}, where=st.sidebar, rerun_when_done=False)

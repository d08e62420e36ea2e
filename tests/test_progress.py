"""Progress never goes backwards, every slow stage reports inside itself, and the ETA waits for
data (issue #25, friction 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.base.progress import StagedProgress
from tests.support.capitals import seed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_lower_count_in_the_same_pass_is_ignored_and_the_bar_only_grows():
    bar = StagedProgress({"extract": (0.0, 0.5), "layers": (0.5, 1.0)})
    bar("layers", 20, 30, "layer 20")
    fraction, message = bar.fraction, bar.message
    bar("layers", 0, 30, "layer 0")  # the sweep's second pass under the same name went back to 0/30
    assert (bar.fraction, bar.message) == (fraction, message) == (pytest.approx(0.5 + 0.5 * 20 / 30), message)
    bar("extract", 1, 10)  # an earlier stage's share never pulls the bar back
    assert bar.fraction == pytest.approx(fraction) and bar.message.startswith("extract: 1/10")
    bar("layers", 30, 30, "done")
    assert bar.fraction == pytest.approx(1.0)


def test_no_eta_until_the_stage_has_measured_enough_of_its_work():
    clock = Clock()
    bar = StagedProgress({"load": (0.0, 0.05), "generate": (0.05, 1.0)}, untimed=("load",), clock=clock)
    bar("load", 0, 1)
    clock.now = 30.0  # a long model load
    bar("load", 1, 1)
    assert bar.eta() is None  # loading says nothing about the work's pace
    bar("generate", 0, 1000)
    clock.now = 60.0
    assert bar.eta() is None  # half a minute of prefill and not one token yet: no guess
    bar("generate", 10, 1000)
    assert bar.eta() is None  # 1% of the tokens is not yet a pace
    bar("generate", 100, 1000)
    clock.now = 70.0  # 100 tokens in 40 s of this stage
    eta = bar.eta()
    assert eta is not None and eta == pytest.approx(40.0 * 900 / 100, rel=0.01)


def test_the_page_reads_the_eta_the_worker_measured_less_the_time_since():
    from core.base.progress import eta_seconds

    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    beat_at = now - timedelta(seconds=4)
    # the worker has measured no pace yet: no ETA from the clock alone
    assert eta_seconds(running=True, measured=None, beat_at=beat_at, now=now) is None
    assert eta_seconds(running=True, measured=30.0, beat_at=beat_at, now=now) == pytest.approx(26.0)
    naive = beat_at.replace(tzinfo=None)  # as SQLite hands it back: UTC
    assert eta_seconds(running=True, measured=30.0, beat_at=naive, now=now) == pytest.approx(26.0)
    assert eta_seconds(running=False, measured=30.0, beat_at=beat_at, now=now) is None


def test_a_retrains_evaluate_stage_counts_the_answers_it_scores(
    sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch
):
    from core.orchestration.retrain import RetrainParams, retrain

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    ids = seed(sqlite_db)
    seen: list[tuple[str, int, int]] = []
    retrain(
        sqlite_db,
        tiny_lm,
        RetrainParams(n_boot=0, epochs=1),
        progress=lambda stage, done, total, message="": seen.append((stage, done, total)),
    )
    evaluate = [(done, total) for stage, done, total in seen if stage == "evaluate"]
    assert {total for _, total in evaluate} == {len(ids)}  # every scored answer, not "0/1" then done
    assert [done for done, _ in evaluate] == sorted(done for done, _ in evaluate)
    assert evaluate[-1] == (len(ids), len(ids)) and len(evaluate) > 2


def test_the_comparison_with_the_active_version_counts_the_answers_it_scores(
    sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch
):
    from core.orchestration.registry import promote
    from core.orchestration.retrain import RetrainParams, retrain

    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    seed(sqlite_db)
    first = retrain(sqlite_db, tiny_lm, RetrainParams(n_boot=0, epochs=1))
    promote(sqlite_db, first.probe_version, None)
    seen: list[tuple[str, int, int]] = []
    retrain(
        sqlite_db,
        tiny_lm,
        RetrainParams(n_boot=10, epochs=1),
        progress=lambda stage, done, total, message="": seen.append((stage, done, total)),
    )
    compare = [(done, total) for stage, done, total in seen if stage == "compare" and total > 1]
    n_validation = first.metrics["n_validation"]
    assert compare[0] == (0, n_validation) and compare[-1] == (n_validation, n_validation)

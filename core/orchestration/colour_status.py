"""Why a heatmap has no risk colours, in words a person can act on.

"No probe yet" is true but useless while the demo seed is still training its probe, or a
retrain or re-score is on its way: the pages (Annotate, Generate) read the run rows
(`db.train_runs`) and the probes (`db.probes`) through here and say what is happening, e.g. "The demo probe is
still training (step 2 of 3: generating the demo answers, 80 of 200)." Read-only.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from db.models import RunKind, RunStatus, TrainRun
from db.predictions import has_scores
from db.probes import active_probe, any_probe, find_probe
from db.train_runs import ACTIVE, latest_run

# The demo seed's stages as three steps a person understands (the worker's stage names).
SEED_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loading the model", ("start", "load")),
    ("generating the demo answers", ("generate",)),
    ("training the demo probe", ("labels", "extract", "train", "evaluate", "compare", "bootstrap", "register")),
)


def seed_step(stage: str | None) -> tuple[int, str]:
    """(step number, what it does) of the seed's current stage; an unknown stage counts as training."""
    for number, (words, stages) in enumerate(SEED_STEPS, start=1):
        if (stage or "start") in stages:
            return number, words
    return len(SEED_STEPS), SEED_STEPS[-1][0]


#: what a stage's "done/total" counts, so a label never puts answers and steps side by side
STAGE_UNITS = {
    "generate": "answers",
    "labels": "answers",
    "extract": "answers",
    "train": "steps",
    "bootstrap": "resamples",
}


def seed_progress_label(stage: str | None, message: str | None) -> str:
    """The seed's progress as one unit per figure: "step 2 of 3, generating the demo answers: 80
    of 200 answers" (the worker's message, "generate: 80/200 · 4 answers at a time", mixed them)."""
    number, words = seed_step(stage)
    found = _STAGE_COUNT.match(message or "")
    count = ""
    if found and found.group(1) == (stage or "") and int(found.group(3)) > 1:
        unit = STAGE_UNITS.get(found.group(1), "")
        count = f": {found.group(2)} of {found.group(3)}" + (f" {unit}" if unit else "")
    return f"step {number} of {len(SEED_STEPS)}, {words}{count}"


def _percent(run: TrainRun) -> str:
    return f", {round(100 * float(run.progress or 0.0))}%" if run.status == RunStatus.RUNNING else ""


_STAGE_COUNT = re.compile(r"^(\w+): (\d+)/(\d+)")


def _stage_count(run: TrainRun) -> str:
    """ ", 40 of 200" from the worker's message ("generate: 40/200 · ...") for the current stage; the
    overall progress bar restarts per stage, so a percentage would jump back and forth."""
    found = _STAGE_COUNT.match(run.message or "")
    if not found or found.group(1) != run.stage or int(found.group(3)) <= 1:
        return ""
    return f", {found.group(2)} of {found.group(3)}"


def _running(session: Session, kind: str) -> TrainRun | None:
    run = latest_run(session, kind)
    return run if run is not None and run.status in ACTIVE else None


def _why_no_probe(session: Session) -> str:
    """No probe scores this page: say whether one is coming, and from where."""
    seed = _running(session, RunKind.SEED)
    if seed is not None:
        number, words = seed_step(seed.stage if seed.status == RunStatus.RUNNING else "start")
        if seed.status == RunStatus.QUEUED:
            return "The demo probe is about to be trained: the demo seeding is starting (step 1 of 3)."
        return (
            f"The demo probe is still training (step {number} of {len(SEED_STEPS)}: {words}"
            f"{_stage_count(seed)}); "
            "risk colours appear when it is ready."
        )
    retrain = _running(session, RunKind.RETRAIN)
    active = active_probe(session)
    if retrain is not None and active is None:
        return (
            f"A probe is being trained (run {retrain.id}, {retrain.stage or retrain.status}{_percent(retrain)}); "
            "risk colours appear once an admin makes it active."
        )
    if active is not None:
        return (
            f"The active probe v{active.version} was trained for another language model than the one loaded, "
            "so it cannot score these tokens; an admin can promote a probe for this model on the Probes page."
        )
    if any_probe(session):
        return "No probe is active: an admin can promote one on the Probes page."
    seed = latest_run(session, RunKind.SEED)
    if seed is not None and seed.status in (RunStatus.FAILED, RunStatus.CANCELLED):
        return (
            f"No probe yet: the demo seeding {seed.status}; an admin can start it again from the sidebar, "
            "or retrain on the team's labels on the Probes page."
        )
    return "No probe yet: label some answers, then an admin retrains on the Probes page; risk colours appear then."


def no_colour_reason(session: Session, *, scoring_version: int | None, generation_id: int | None = None) -> str | None:
    """None when the tokens can be coloured; else one sentence saying why not.

    `scoring_version` is the probe version the page scores with (None: no probe fits the loaded
    model or none was chosen); `generation_id` a stored answer whose cached scores are needed.
    """
    if scoring_version is None:
        return _why_no_probe(session)
    if generation_id is None:
        return None
    probe = find_probe(session, scoring_version)
    if probe is None:
        return _why_no_probe(session)
    if has_scores(session, probe.id, generation_id):
        return None
    rescore = _running(session, RunKind.RESCORE)
    if rescore is not None:
        return (
            f"Probe v{scoring_version}'s scores are being computed for every answer "
            f"(re-score run {rescore.id}{_percent(rescore)}); this answer gets its colours when it is reached."
        )
    return missing_scores_note(scoring_version)


def missing_scores_note(scoring_version: int) -> str:
    """What an answer without stored scores says: what an admin can do, never a command line
    (Annotate gives admins a Re-score button beside it)."""
    return (
        f"This answer has no stored scores from probe v{scoring_version} (it was added after the last "
        f"re-score). An admin can re-score: it stores probe v{scoring_version}'s scores for every "
        "answer that lacks them."
    )

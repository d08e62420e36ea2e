"""Retrain test data: 32 labelled answers about capital cities (right or wrong, labelled so),
seeding them into a database, and one retrain run done in-process.

Used by test_retrain, test_inspect_data, test_inspect_page, test_probes_page and test_batch.
"""

from __future__ import annotations

import os

from core.base.types import Generation as CoreGeneration
from core.base.types import Span

FACTS = [
    ("France", "Paris", "Lyon"),
    ("Japan", "Tokyo", "Osaka"),
    ("Italy", "Rome", "Milan"),
    ("Spain", "Madrid", "Seville"),
    ("Peru", "Lima", "Cusco"),
    ("Kenya", "Nairobi", "Mombasa"),
    ("Egypt", "Cairo", "Giza"),
    ("Chile", "Santiago", "Arica"),
]


def answers() -> list[tuple[str, str, list[Span], str]]:
    """(prompt, completion, gold spans, split): the city is right or wrong, and labelled so."""
    out = []
    for n, (country, right, wrong) in enumerate(FACTS * 4):
        city = wrong if n % 2 else right
        completion = f"The capital of {country} is {city}. It is a big city."
        start = completion.index(city)
        label = "Not Supported" if n % 2 else "Supported"
        split = "validation" if n % 8 in (0, 3) else "train"
        out.append(
            (f"What is the capital of {country}? ({n})", completion, [Span(start, start + len(city), label)], split)
        )
    return out


def seed(database, *, gold: bool = True, annotators: int = 0) -> list[int]:
    """Store `answers()` in dataset "capitals" with their spans as gold (and/or as the sets of
    `annotators` new annotators ann0, ann1, ...); return the generation ids in order."""
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.users import add_user

    ids = []
    with database.sessions() as session, session.begin():
        people = [add_user(session, f"ann{i}", "annotator-password", "annotator") for i in range(annotators)]
        dataset = get_or_create_dataset(session, "capitals")
        for prompt, completion, spans, split in answers():
            gen = CoreGeneration(
                conversation=[{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
            )
            row = add_generation(session, dataset, gen, split=split)
            ids.append(row.id)
            if gold:
                save_annotation_set(session, row.id, spans, owner=None, expected_version=0, actor=None)
            for person in people:
                save_annotation_set(session, row.id, spans, owner=person, expected_version=0, actor=person)
    return ids


def run_retrain(database, lm, **params):
    """One retrain run in this process (a run row, started by us); asserts it succeeded and
    returns (outcome, run id)."""
    from core.orchestration.retrain import RetrainParams, retrain
    from db.train_runs import create_run, get_run, mark_started

    p = RetrainParams(model=None, n_boot=200, **params)
    with database.sessions() as session, session.begin():
        run_id = create_run(session, "retrain", p.to_dict(), None).id
        mark_started(session, run_id, os.getpid())
    outcome = retrain(database, lm, p, run_id=run_id)
    with database.sessions() as session:
        assert get_run(session, run_id).status == "succeeded"
    return outcome, run_id

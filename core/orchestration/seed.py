"""First-run demo: answers about countries, labelled against `countryinfo`, and a demo probe.

Orchestrates core (model, labelling rule, training) and db (storage), so like the CLI it
imports db lazily. Runs once: a finished seed leaves the `demo` dataset and an active
probe, and a second call does nothing.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.text.demo import DemoQuestion, demo_questions, label_answer
from core.base.progress import CancelToken, check
from core.base.types import Generation

DEMO_DATASET = "demo"
DEFAULT_DEMO_SIZE = 200


def demo_size() -> int:
    return int(os.environ.get("PROBELENS_DEMO_SIZE", DEFAULT_DEMO_SIZE))


def probes_dir() -> Path:
    return Path(os.environ.get("PROBELENS_PROBES_DIR", Path.cwd() / "data" / "probes"))


def needs_seed(database) -> bool:
    from db.generations import find_dataset

    with database.sessions() as session:
        return find_dataset(session, DEMO_DATASET) is None


def _answer(lm, question: DemoQuestion, index: int, cancel: CancelToken | None):
    from core.probes.pipeline import GenerationSettings, generate_answer

    # Sampling (not greedy) gives varied answers, and with them more hallucinations.
    settings = GenerationSettings(max_new_tokens=48, temperature=0.7, top_p=0.95, seed=index)
    messages = [{"role": "user", "content": question.prompt}]
    return generate_answer(lm, messages, settings, cancel=cancel)


def seed_demo(
    database,
    lm,
    *,
    size: int | None = None,
    progress: Callable[..., None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Generate, label and store the demo answers, then train and activate a demo probe."""
    from core.probes.files import save_probe
    from core.probes.pipeline import train_from_generations
    from db.annotations import save_annotation_set
    from db.generations import add_generation, get_or_create_dataset
    from db.probes import next_version, register_probe

    if not needs_seed(database):
        return {"skipped": True}
    questions = demo_questions(size or demo_size())
    labelled: list[Generation] = []
    rows: list[tuple[Generation, Any, DemoQuestion]] = []
    for index, question in enumerate(questions):
        check(cancel)
        if progress:
            progress("generate", index, len(questions), question.prompt)
        generation, trace, _reason = _answer(lm, question, index, cancel)
        generation.id = question.id
        generation.spans = label_answer(question, generation.completion)
        rows.append((generation, trace, question))
        labelled.append(generation)
    if progress:
        progress("generate", len(questions), len(questions), "answers ready")
    check(cancel)
    # Train before writing, so a cancelled or failed seed leaves nothing half-made.
    result = train_from_generations(lm, labelled, val_fraction=0.2, progress=progress, cancel=cancel)
    with database.sessions() as session, session.begin():
        version = next_version(session)
        target = probes_dir() / f"v{version}"
        save_probe(target, result.probe, result.config)
        dataset = get_or_create_dataset(session, DEMO_DATASET)
        for generation, trace, _question in rows:
            split = "validation" if _is_validation(generation) else "train"
            row = add_generation(session, dataset, generation, split=split, source="generated", trace=trace)
            if row is not None:
                save_annotation_set(session, row.id, generation.spans, owner=None, expected_version=0, actor=None,
                                    action="annotation.seed", detail="demo labelling rule (countryinfo facts)")
        register_probe(session, artifact_dir=str(target), config=result.config, version=version, activate=True)
    return {"answers": len(rows), "probe_version": version, "metrics": result.metrics}


def _is_validation(generation: Generation) -> bool:
    from core.probes.training_set import split_by_generation
    from core.probes.pipeline import split_key

    return split_by_generation([split_key(generation)], 0.2)[0]

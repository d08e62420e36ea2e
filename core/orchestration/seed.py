"""First-run demo: answers about countries, labelled against `countryinfo`, and a demo probe.

Runs as a `seed` run of the worker (progress, cancel, crash safety like every other run).
Runs once: a finished seed leaves the `demo` dataset and an active probe, and a second
call does nothing. Nothing is written until the probe is trained, and the answers and the
probe are registered in one transaction, so a cancelled or killed seed leaves nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.analysis.queue_order import DEMO_DATASET as DEMO_DATASET
from core.base import settings
from core.base.decoding import DecodingSettings
from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import Generation
from core.engine.activations import ActivationCache, GenerationActivations, generation_key
from core.orchestration.registry import register_version
from core.probes.config import ProbeConfig
from core.probes.files import save_probe
from core.probes.pipeline import generate_answers, split_key, train_from_generations
from core.probes.training_set import split_by_generation
from core.text.demo import demo_questions, label_answer
from db.annotations import save_annotation_set
from db.generations import add_generation, find_dataset, get_or_create_dataset
from db.predictions import store_scores
from db.probes import active_probe, set_active


def needs_seed(database) -> bool:
    with database.sessions() as session:
        return find_dataset(session, DEMO_DATASET) is None


# Sampling (not greedy) gives varied answers, and with them more hallucinations.
DEMO_SETTINGS = DecodingSettings(max_new_tokens=48, temperature=0.7, top_p=0.95, seed=0)


def seed_demo(
    database,
    lm,
    *,
    size: int | None = None,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Generate (batched), label and store the demo answers, then train a demo probe.

    The hidden states read while generating go straight into the activation cache under
    the keys the stored answers will have, so neither this training nor the first retrain
    runs the model over them again. The probe becomes active only if no probe is active
    when it is registered: an admin's promotion in the meantime is never replaced."""
    if not needs_seed(database):
        return {"skipped": True}
    questions = demo_questions(size or settings.demo_size())
    cache = ActivationCache(lm)
    layer = lm.default_layer
    labelled: list[Generation | None] = [None] * len(questions)
    traces: list[Any] = [None] * len(questions)
    states: list[Any] = [None] * len(questions)  # block L's states, to score the answers once trained
    answers = generate_answers(
        lm,
        [[{"role": "user", "content": q.prompt}] for q in questions],
        DEMO_SETTINGS,
        layers=(layer,),
        batch_size=batch_size,
        progress=progress,
        cancel=cancel,
    )
    for answer in answers:
        question = questions[answer.index]
        generation = answer.generation
        generation.id = question.id
        generation.spans = label_answer(question, generation.completion)
        generation.extra["tokens"] = {"ids": list(answer.trace.token_ids)}  # as the stored answer will have
        trace = answer.trace
        hidden = {layer: cache.as_stored(answer.hidden[layer])} if trace.token_ids else {}
        if trace.token_ids:
            cache.put(
                GenerationActivations(generation_key(generation), trace, hidden)  # the cache keeps no scores
            )
        labelled[answer.index], traces[answer.index] = generation, trace
        states[answer.index] = answer.hidden[layer] if trace.token_ids else None
    check(cancel)
    report(progress, "generate", len(questions), len(questions), "answers ready")
    rows = [(g, t, h) for g, t, h in zip(labelled, traces, states) if g is not None]
    # Train before writing, so a cancelled or failed seed leaves nothing half-made.
    result = train_from_generations(lm, [g for g, _, _ in rows], val_fraction=0.2, progress=progress, cancel=cancel)
    check(cancel)
    # The seed's own probe scores its own answers now, from the states it generated them with, so
    # their heatmaps are coloured as soon as that probe is active (no re-score run needed).
    scores = [
        None if h is None else [float(x) for x in result.probe.predict(h).reshape(-1).tolist()] for _, _, h in rows
    ]
    activated = {"done": False}

    def write(staging: Path, version: int) -> ProbeConfig:
        result.config.version = version
        save_probe(staging, result.probe, result.config)
        return result.config

    def store_answers(session, row) -> None:
        dataset = get_or_create_dataset(session, DEMO_DATASET)
        for (generation, trace, _), answer_scores in zip(rows, scores):
            split = "validation" if _is_validation(generation) else "train"
            stored = add_generation(session, dataset, generation, split=split, source="generated", trace=trace)
            if stored is not None:
                if answer_scores is not None:
                    store_scores(session, row.version, stored.id, answer_scores)
                save_annotation_set(
                    session,
                    stored.id,
                    generation.spans,
                    owner=None,
                    expected_version=0,
                    actor=None,
                    action="annotation.seed",
                    detail="demo labelling rule (countryinfo facts)",
                )
        if active_probe(session) is None:
            set_active(session, row.version, None)
            activated["done"] = True

    done = register_version(database, write, activate=False, in_transaction=store_answers, tag="seed")
    return {
        "answers": len(rows),
        "probe_version": done.probe_version,
        "activated": activated["done"],
        "metrics": result.metrics,
    }


def _is_validation(generation: Generation) -> bool:
    return split_by_generation([split_key(generation)], 0.2)[0]

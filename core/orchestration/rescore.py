"""Re-scoring: store one probe version's per-token scores for stored answers (the heatmaps),
and tokenise answers that were imported without tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import Generation, TokenTrace
from core.engine.activations import extract_activations
from core.orchestration.registry import LoadedProbe, load_version
from core.text.readable import plural
from db.generations import find_generation, generation_ids, get_generation, set_trace, to_core, trace_of
from db.predictions import scored_generation_ids, store_scores

RESCORE_CHUNK = 64  # generations per stored batch: a cancel keeps what is done


@dataclass
class ScoredAnswer:
    """One stored answer's scores under a version, and its trace when it had none stored."""

    generation_id: int
    scores: list[float]
    new_trace: TokenTrace | None = None


def read_answers(database, ids: list[int]) -> list[tuple[int, Generation, bool]]:
    """(id, answer with its stored token ids, whether it had a trace) of stored answers."""
    out = []
    with database.sessions() as session:
        for row_id in ids:
            row = find_generation(session, row_id)
            if row is None:
                continue
            gen, trace = to_core(row), trace_of(row)
            if trace is not None:
                gen.extra["tokens"] = {"ids": list(trace.token_ids)}
            out.append((row_id, gen, trace is not None))
    return out


def score_answers(
    lm, probe: LoadedProbe, answers: list[tuple[int, Generation, bool]], cancel: CancelToken | None = None
) -> list[ScoredAnswer]:
    """Per-token scores of answers under `probe` (teacher forced, batched): the work of a re-score,
    done where the model is (this process, or a Ray replica)."""
    acts = extract_activations(lm, [g for _i, g, _has in answers], [probe.layer], use_cache=True, cancel=cancel)
    out = []
    for (row_id, gen, has), a in zip(answers, acts):
        hidden = a.hidden[probe.layer] if probe.model is None else probe.hidden(lm, gen.conversation, a.trace.token_ids)
        scores = np.asarray(probe.predict(hidden), dtype=np.float64).reshape(-1).tolist()
        trace = None if has else a.trace
        out.append(ScoredAnswer(row_id, scores, trace))
    return out


def store_scored(database, probe_version: int, scored: list[ScoredAnswer], counts: dict[str, int]) -> None:
    """Write scores (and new traces) in one transaction; writing the same chunk twice changes nothing."""
    with database.sessions() as session, session.begin():
        for item in scored:
            row = find_generation(session, item.generation_id)
            if row is None:
                continue  # deleted meanwhile
            if item.new_trace is not None and trace_of(row) is None:
                set_trace(row, item.new_trace)
                counts["tokens_added"] += 1
            store_scores(session, probe_version, item.generation_id, item.scores)
            counts["scored"] += 1


def ids_to_score(database, probe_version: int, only_missing: bool = True) -> list[int]:
    """Ids of the stored answers to score with `probe_version`: those without its scores, or all of them."""
    with database.sessions() as session:
        done_ids = scored_generation_ids(session, probe_version)  # also refuses an unknown version
        ids = generation_ids(session)
    return [i for i in ids if i not in done_ids] if only_missing else ids


def rescore(
    database,
    lm,
    probe_version: int,
    *,
    only_missing: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, int]:
    """Store probe `probe_version`'s per-token scores for every stored answer, so heatmaps show it.

    Answers imported without tokens get their tokens (and log-probs, entropies) stored too,
    which makes them editable token by token. Work is stored in chunks: a cancel keeps
    what is done, and a second call only does what is missing.
    """
    probe = load_version(database, lm, probe_version)
    ids = ids_to_score(database, probe_version, only_missing)
    counts = {"scored": 0, "tokens_added": 0, "total": len(ids)}
    report(progress, "rescore", 0, len(ids), f"{plural(len(ids), 'answer')} to score with v{probe_version}")
    for start in range(0, len(ids), RESCORE_CHUNK):
        check(cancel)
        chunk = ids[start : start + RESCORE_CHUNK]
        store_scored(database, probe_version, score_answers(lm, probe, read_answers(database, chunk), cancel), counts)
        report(progress, "rescore", min(start + len(chunk), len(ids)), len(ids), f"v{probe_version}")
    return counts


def tokenise_answer(database, lm, generation_id: int):
    """Store the tokens (and log-probs, entropies) of an answer imported without them, so it
    can be labelled token by token; returns the trace. One teacher-forced pass, no probe."""

    with database.sessions() as session:
        row = get_generation(session, generation_id)
        existing = trace_of(row)
        if existing is not None:
            return existing
        gen = to_core(row)
    acts = extract_activations(lm, [gen], [lm.default_layer], use_cache=True)[0]
    trace = acts.trace
    with database.sessions() as session, session.begin():
        set_trace(get_generation(session, generation_id), trace)
    return trace

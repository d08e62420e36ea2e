"""Re-scoring: store one probe version's per-token scores for stored answers (the heatmaps),
and tokenise answers that were imported without tokens."""
from __future__ import annotations

import numpy as np
from sqlalchemy import select

from core.base.progress import CancelToken, ProgressFn, check, report
from core.base.types import TokenTrace
from core.engine.activations import extract_activations
from core.orchestration.registry import load_version
from core.text.readable import plural
from db.generations import get_generation, set_trace, to_core, trace_of
from db.models import Generation, Prediction
from db.predictions import store_scores
from db.probes import get_probe

RESCORE_CHUNK = 64  # generations per stored batch: a cancel keeps what is done



def rescore(database, lm, version: int, *, only_missing: bool = True, progress: ProgressFn | None = None,
            cancel: CancelToken | None = None) -> dict[str, int]:
    """Store probe `version`'s per-token scores for every stored answer, so heatmaps show it.

    Answers imported without tokens get their tokens (and log-probs, entropies) stored too,
    which makes them editable token by token. Work is stored in chunks: a cancel keeps
    what is done, and a second call only does what is missing.
    """


    loaded = load_version(database, lm, version)
    probe, layer = loaded.probe, loaded.layer
    with database.sessions() as session:
        probe_id = get_probe(session, version).id
        ids = list(session.scalars(select(Generation.id).order_by(Generation.id)))
        if only_missing:
            done_ids = set(session.scalars(select(Prediction.generation_id).where(Prediction.probe_id == probe_id)))
            ids = [i for i in ids if i not in done_ids]
    counts = {"scored": 0, "tokens_added": 0, "total": len(ids)}
    report(progress, "rescore", 0, len(ids), f"{plural(len(ids), 'answer')} to score with v{version}")
    for start in range(0, len(ids), RESCORE_CHUNK):
        check(cancel)
        chunk = ids[start:start + RESCORE_CHUNK]
        with database.sessions() as session:
            rows = [session.get(Generation, i) for i in chunk]
            gens, had_trace = [], []
            for r in rows:
                if r is None:
                    continue
                g, trace = to_core(r), trace_of(r)
                if trace is not None:
                    g.extra["tokens"] = {"ids": list(trace.token_ids)}
                gens.append((r.id, g))
                had_trace.append(trace is not None)
        acts = extract_activations(lm, [g for _i, g in gens], [layer], use_cache=True, cancel=cancel)
        with database.sessions() as session, session.begin():
            for (row_id, _g), a, has in zip(gens, acts, had_trace):
                r = session.get(Generation, row_id)
                if r is None:
                    continue  # deleted meanwhile
                hidden = a.hidden[layer] if loaded.model is None else loaded.hidden(lm, _g.conversation, a.token_ids)
                scores = np.asarray(probe.predict(hidden), dtype=np.float64).reshape(-1).tolist()
                if not has:
                    set_trace(r, TokenTrace(a.token_ids, a.texts, a.offsets, a.logprobs, a.entropies))
                    counts["tokens_added"] += 1
                store_scores(session, version, row_id, scores)
                counts["scored"] += 1
        report(progress, "rescore", min(start + len(chunk), len(ids)), len(ids), f"v{version}")
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
    trace = TokenTrace(acts.token_ids, acts.texts, acts.offsets, acts.logprobs, acts.entropies)
    with database.sessions() as session, session.begin():
        set_trace(get_generation(session, generation_id), trace)
    return trace


"""The Inspect page's data on a tiny random model and a real SQLite file: the right answers,
the same numbers as the registered metrics, errors and suspects that point at real rows."""

from __future__ import annotations

import numpy as np
import pytest

from core.base.errors import UserError
from tests.support.capitals import FACTS, answers, run_retrain, seed


@pytest.fixture()
def trained(sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    ids = seed(sqlite_db)
    outcome, _ = run_retrain(sqlite_db, tiny_lm)
    return sqlite_db, tiny_lm, ids, outcome


def test_evaluation_set_is_the_validation_answers_with_the_registered_metrics(trained):
    from core.analysis.curves import threshold_table
    from core.orchestration.eval_sets import evaluation_set
    from core.probes.metrics import evaluate_items

    database, lm, ids, outcome = trained
    es = evaluation_set(database, lm, outcome.probe_version, splits=["validation"])
    validation = [i for i, a in zip(ids, answers()) if a[3] == "validation"]
    assert es.row_ids == validation and es.keys == [str(i) for i in validation]
    again = evaluate_items(es.items)
    for level in ("token", "span_max"):
        assert again[level]["auc"] == pytest.approx(outcome.metrics[level]["auc"])
    table = threshold_table(es.items, "span_max")
    assert table["auc"] == pytest.approx(outcome.metrics["span_max"]["auc"])
    for g, spans in enumerate(es.spans_char):
        ((a, b),) = spans  # one labelled city per answer
        city = es.gold_spans[g][0]
        assert es.texts[g][city["start"] : city["end"]] in es.texts[g][a:b]
        assert len(es.traces[g].scores) == len(es.traces[g].token_ids) == es.items[g].labels.size
    with pytest.raises(UserError, match="no labelled answers"):
        evaluation_set(database, lm, outcome.probe_version, datasets=["nothing-here"])


def test_errors_and_suspects_point_at_real_rows_and_spans(trained):
    from core.analysis.mistakes import top_errors
    from core.orchestration.eval_sets import evaluation_set, first_token_of, suspects

    database, lm, ids, outcome = trained
    es = evaluation_set(database, lm, outcome.probe_version, splits=["train", "validation"])
    assert sorted(es.row_ids) == sorted(ids)
    errors = top_errors(es.items, es.keys, es.texts, es.spans_char, threshold=0.5, k=50)
    assert errors["n_false_positives"] + errors["n_false_negatives"] > 0  # a random model errs
    for kind, gold in (("false_positives", "Supported"), ("false_negatives", "Not Supported")):
        for e in errors[kind]:
            g = es.keys.index(e["key"])
            assert es.gold_spans[g][0]["label"] == gold
            token = first_token_of(es, g, e["start"])
            a, b = es.traces[g].offsets[token]
            assert a <= e["start"] < b or a >= e["start"]
    found = suspects(es, top=10)
    assert len(found) <= 10
    for s in found:
        assert s["row_id"] in ids and s["span_text"] and 0 <= s["score"] <= 1


def test_layer_scan_version_comparison_and_token_scan(trained):
    from core.analysis.comparison import compare_probes
    from core.orchestration.eval_sets import evaluation_set, layer_scan, rescored, token_scan

    database, lm, ids, outcome = trained
    second, _ = run_retrain(database, lm, epochs=2, layer=1)
    es = evaluation_set(database, lm, outcome.probe_version)
    other = rescored(es, database, lm, second.probe_version)
    assert other.layer == 1 and other.row_ids == es.row_ids
    assert not np.allclose(other.items[0].probe, es.items[0].probe)
    delta = compare_probes(es.items, other.items, n_boot=50)
    assert delta["token"]["auc"]["a"] == pytest.approx(outcome.metrics["token"]["auc"])
    assert delta["token"]["auc"]["b"] == pytest.approx(second.metrics["token"]["auc"])

    from core.base.progress import StagedProgress
    from core.orchestration.eval_sets import LAYER_SCAN_SHARES

    bar, seen = StagedProgress(LAYER_SCAN_SHARES), []

    def progress(stage: str, done: int, total: int, message: str = "") -> None:
        bar(stage, done, total, message)
        seen.append((stage, bar.fraction))

    scan = layer_scan(database, lm, None, ["validation"], layers=[1, 2, 3], n_boot=20, progress=progress)
    assert [stage for stage, _ in seen if stage not in ("extract",)][-1] == "intervals"
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)  # one bar, forward only
    assert [r["layer"] for r in scan.rows] == [1, 2, 3] and set(scan.probes) == {1, 2, 3}
    assert scan.best_layer in (1, 2, 3)
    matrix = token_scan(lm, es, 0, scan)
    assert matrix["layers"] == [1, 2, 3]
    assert np.asarray(matrix["matrix"]).shape == (3, len(es.traces[0].token_ids)) == (3, len(matrix["tokens"]))


# --- known answers -------------------------------------------------------------------------------


def register_constant(database, lm, directory, p: float, layer: int = 3) -> int:
    """A probe that gives every token the score `p` (zero weights): every metric is known."""
    import math

    from core.probes.config import ProbeConfig
    from core.probes.files import save_probe
    from core.probes.linear import LinearProbe
    from db.probes import register_probe

    probe = LinearProbe.from_weights(np.zeros(lm.hidden_size, dtype=np.float32), math.log(p / (1 - p)))
    config = ProbeConfig(
        model_id=lm.model_id, tokenizer_hash=lm.tokenizer_hash, layer=layer, hidden_size=lm.hidden_size
    )
    save_probe(directory, probe, config)
    with database.sessions() as session, session.begin():
        return register_probe(session, artifact_dir=str(directory), config=config).version


def test_a_constant_probe_gives_the_known_metrics_errors_and_conformal_threshold(trained, tmp_path):
    from core.analysis.curves import conformal_from_items, curves, threshold_table
    from core.analysis.mistakes import top_errors
    from core.orchestration.eval_sets import evaluation_set

    database, lm, ids, _outcome = trained
    version = register_constant(database, lm, tmp_path / "constant", 0.7)
    es = evaluation_set(database, lm, version, splits=["validation"])
    gold = {i: a[2][0].label for i, a in zip(ids, answers()) if a[3] == "validation"}
    supported = sorted(i for i, label in gold.items() if label == "Supported")
    hallucinated = sorted(i for i, label in gold.items() if label != "Supported")
    assert len(supported) == len(hallucinated) == 4
    for trace in es.traces:
        assert np.allclose(trace.scores, 0.7, atol=1e-6)

    table = threshold_table(es.items, "span_max")
    assert table["auc"] == pytest.approx(0.5)  # all tied: no ranking at all
    at = {round(t, 2): i for i, t in enumerate(table["thresholds"])}
    assert table["recall"][at[0.5]] == 1.0 and table["precision"][at[0.5]] == pytest.approx(0.5)
    assert table["fpr"][at[0.5]] == 1.0 and table["tp"][at[0.5]] + table["fp"][at[0.5]] == 8
    assert table["recall"][at[0.71]] == 0.0 and table["precision"][at[0.71]] is None  # nothing flagged
    assert curves(es.items, "span_max")["scores"]["probe"]["auc"] == pytest.approx(0.5)

    # flagged at 0.5: every supported city is a false positive, and nothing is missed
    errors = top_errors(es.items, es.keys, es.texts, es.spans_char, threshold=0.5, k=50)
    assert sorted(int(e["key"]) for e in errors["false_positives"]) == supported
    assert errors["false_negatives"] == []
    # at 0.8 nothing is flagged: every hallucinated city is a false negative, at its city
    errors = top_errors(es.items, es.keys, es.texts, es.spans_char, threshold=0.8, k=50)
    assert sorted(int(e["key"]) for e in errors["false_negatives"]) == hallucinated
    assert errors["false_positives"] == []
    wrong_cities = {wrong for _country, _right, wrong in FACTS}
    for e in errors["false_negatives"]:
        g = es.keys.index(e["key"])
        city = es.texts[g][es.gold_spans[g][0]["start"] : es.gold_spans[g][0]["end"]]
        assert city in wrong_cities and city in e["span_text"]

    # 4 calibration negatives all at 0.7: alpha 0.25 -> k = ceil(5 * 0.75) = 4 -> threshold 0.7, FPR 0
    c = conformal_from_items(es.items, "span_max", 0.25, set(es.keys), es.keys)
    assert c["n_calibration"] == 4 and c["rank_k"] == 4 and c["threshold"] == pytest.approx(0.7, abs=1e-6)
    assert c["fpr_bound"] == pytest.approx(0.2)
    # alpha 0.1 needs ceil(5 * 0.9) = 5 > 4 negatives: no finite threshold, never flags
    c = conformal_from_items(es.items, "span_max", 0.1, set(es.keys), es.keys)
    assert c["threshold"] is None and c["never_flags"] and c["min_calibration"] == 9


def test_trained_probe_metrics_match_a_recount_from_the_heatmap_traces(trained):
    """The page's numbers recomputed by another route: span scores read off the heatmap trace
    at each span's characters, labels off the gold spans, then sklearn and a sorted list."""
    import math

    from sklearn.metrics import roc_auc_score

    from core.analysis.curves import conformal_from_items, threshold_table
    from core.orchestration.eval_sets import evaluation_set

    database, lm, ids, outcome = trained
    es = evaluation_set(database, lm, outcome.probe_version, splits=["train", "validation"])
    labels, scores = [], []
    for g, trace in enumerate(es.traces):
        ((start, end),) = es.spans_char[g]
        inside = [s for (a, b), s in zip(trace.offsets, trace.scores) if a < end and b > start]
        scores.append(max(inside))
        labels.append(0 if es.gold_spans[g][0]["label"] == "Supported" else 1)
    labels_a, scores_a = np.array(labels), np.array(scores)
    table = threshold_table(es.items, "span_max")
    assert table["auc"] == pytest.approx(roc_auc_score(labels_a, scores_a))
    at = {round(t, 2): i for i, t in enumerate(table["thresholds"])}
    for t in (0.3, 0.5, 0.7):
        flagged = scores_a >= t
        tp = int((flagged & (labels_a == 1)).sum())
        assert table["tp"][at[t]] == tp and table["fp"][at[t]] == int((flagged & (labels_a == 0)).sum())
        assert table["recall"][at[t]] == pytest.approx(tp / labels_a.sum())

    calibration = {k for k, s in zip(es.keys, es.splits) if s == "train"}
    negatives = sorted(s for s, y, k in zip(scores, labels, es.keys) if y == 0 and k in calibration)
    k = math.ceil((len(negatives) + 1) * (1 - 0.2))
    c = conformal_from_items(es.items, "span_max", 0.2, calibration, es.keys)
    assert c["threshold"] == pytest.approx(negatives[k - 1])
    held = [s for s, y, key in zip(scores, labels, es.keys) if y == 0 and key not in calibration]
    assert c["held_out"]["fpr"] == pytest.approx(sum(s > negatives[k - 1] for s in held) / len(held))


def test_error_heatmaps_at_threshold_zero_outline_only_the_labelled_span(trained):
    """Issue #14 item 13 on real answers: the Errors tab's heatmap, drawn as the page draws it,
    outlines each answer's one labelled span at threshold 0, not (nearly) every token."""
    from core.analysis.mistakes import flagged_spans
    from core.components.heatmap_data import TokenView, heatmap_payload
    from core.orchestration.eval_sets import evaluation_set
    from tests.support.heatmap_reference import token_outcomes

    database, lm, _ids, outcome = trained
    es = evaluation_set(database, lm, outcome.probe_version, splits=["train", "validation"])
    for g, trace in enumerate(es.traces):
        view = TokenView.from_trace(trace)
        outcomes = token_outcomes(
            heatmap_payload(
                view,
                threshold=0.0,
                gold_spans=es.gold_spans[g],
                predicted_spans=flagged_spans(es.items[g], es.spans_char[g], 0.0),
            )
        )
        outlined = [i for i, o in enumerate(outcomes) if o]
        ((start, end),) = es.spans_char[g]
        assert outlined and all(start < trace.offsets[i][1] and trace.offsets[i][0] < end for i in outlined)
        assert outlined == list(range(outlined[0], outlined[-1] + 1))  # one outlined span
        assert len(outlined) < len(trace.token_ids) / 2


def test_scoring_reports_progress_and_can_be_cancelled(sqlite_db, tiny_lm, tmp_path, monkeypatch):
    from core.base.progress import Cancelled, CancelToken
    from core.orchestration.eval_sets import evaluation_set

    monkeypatch.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cold-cache"))  # nothing cached yet
    seed(sqlite_db)
    version = register_constant(sqlite_db, tiny_lm, tmp_path / "constant", 0.3)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        evaluation_set(sqlite_db, tiny_lm, version, cancel=token)
    seen = []
    es = evaluation_set(
        sqlite_db, tiny_lm, version, progress=lambda stage, done, total, message="": seen.append((done, total))
    )
    assert len(es.row_ids) == 8 and seen and seen[-1][0] == seen[-1][1]

"""The Inspect page's data on a tiny random model and a real SQLite file: the right answers,
the same numbers as the registered metrics, errors and suspects that point at real rows."""
from __future__ import annotations

import numpy as np
import pytest
from test_retrain import _answers, run_retrain, seed

from core.errors import UserError


@pytest.fixture()
def trained(sqlite_db, tiny_lm, isolated_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_PROBES_DIR", str(tmp_path / "probes"))
    ids = seed(sqlite_db)
    outcome, _ = run_retrain(sqlite_db, tiny_lm)
    return sqlite_db, tiny_lm, ids, outcome


def test_evaluation_set_is_the_validation_answers_with_the_registered_metrics(trained):
    from core.inspect_data import evaluation_set
    from core.inspection import threshold_table
    from core.metrics import evaluate_items

    database, lm, ids, outcome = trained
    es = evaluation_set(database, lm, outcome.version, splits=["validation"])
    validation = [i for i, a in zip(ids, _answers()) if a[3] == "validation"]
    assert es.row_ids == validation and es.keys == [str(i) for i in validation]
    again = evaluate_items(es.items)
    for level in ("token", "span_max"):
        assert again[level]["auc"] == pytest.approx(outcome.metrics[level]["auc"])
    table = threshold_table(es.items, "span_max")
    assert table["auc"] == pytest.approx(outcome.metrics["span_max"]["auc"])
    for g, spans in enumerate(es.spans_char):
        (a, b), = spans  # one labelled city per answer
        city = es.gold_spans[g][0]
        assert es.texts[g][city["start"]:city["end"]] in es.texts[g][a:b]
        assert len(es.traces[g].scores) == len(es.traces[g].token_ids) == es.items[g].labels.size
    with pytest.raises(UserError, match="no labelled answers"):
        evaluation_set(database, lm, outcome.version, datasets=["nothing-here"])


def test_errors_and_suspects_point_at_real_rows_and_spans(trained):
    from core.inspect_data import evaluation_set, first_token_of, suspects
    from core.inspection import top_errors

    database, lm, ids, outcome = trained
    es = evaluation_set(database, lm, outcome.version, splits=["train", "validation"])
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
    from core.inspect_data import evaluation_set, layer_scan, rescored, token_scan
    from core.inspection import compare_probes

    database, lm, ids, outcome = trained
    second, _ = run_retrain(database, lm, epochs=2, layer=1)
    es = evaluation_set(database, lm, outcome.version)
    other = rescored(es, database, lm, second.version)
    assert other.layer == 1 and other.row_ids == es.row_ids
    assert not np.allclose(other.items[0].probe, es.items[0].probe)
    delta = compare_probes(es.items, other.items, n_boot=50)
    assert delta["token"]["auc"]["a"] == pytest.approx(outcome.metrics["token"]["auc"])
    assert delta["token"]["auc"]["b"] == pytest.approx(second.metrics["token"]["auc"])

    scan = layer_scan(database, lm, None, ["validation"], layers=[1, 2, 3], n_boot=20)
    assert [r["layer"] for r in scan.rows] == [1, 2, 3] and set(scan.probes) == {1, 2, 3}
    assert scan.best_layer in (1, 2, 3)
    matrix = token_scan(lm, es, 0, scan)
    assert matrix["layers"] == [1, 2, 3]
    assert np.asarray(matrix["matrix"]).shape == (3, len(es.traces[0].token_ids)) == (3, len(matrix["tokens"]))

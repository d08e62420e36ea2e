"""Tests of core/inspection.py on synthetic data: hand-worked cases, brute force, and the
statistical promises (conformal FPR guarantee, paired-bootstrap coverage) checked by simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from core.analysis.comparison import compare_probes, layer_auc_ci, layer_token_matrix
from core.analysis.curves import (
    conformal_from_items,
    conformal_threshold,
    curves,
    downsample_curve,
    empirical_fpr,
    reliability,
    score_histograms,
    threshold_table,
)
from core.analysis.mistakes import label_error_suspects, suspect_kind_words, top_errors
from core.analysis.score_levels import span_max_scores
from core.probes.linear import LinearProbe, TrainConfig
from core.probes.metrics import (
    ItemScores,
    auc_score,
    binary_metrics,
    bootstrap_ci,
    expected_calibration_error,
    level_arrays,
    level_metric,
    recall_at_fpr,
    reliability_bins,
)
from tests.support.scores import synthetic_items

pytestmark = pytest.mark.usefixtures("warnings_are_errors")


def strict_json(obj):
    """Round-trip through JSON with NaN/Infinity forbidden (what a browser's JSON.parse accepts)."""
    return json.loads(json.dumps(obj, allow_nan=False))


# --------------------------------------------------------------------------- curves


@pytest.mark.parametrize("level", ["token", "span_max"])
def test_curves_integrate_to_sklearn_auc(level):
    items = synthetic_items(400, 50, seed=1)
    out = strict_json(curves(items, level))
    assert out["level"] == level
    kinds = {"probe": "probe", "logprob": "neg_logprob", "entropy": "entropy"}
    for name, which in kinds.items():
        y, s = level_arrays(items, which)[level]
        c = out["scores"][name]
        roc, pr = c["roc"], c["pr"]
        assert len(roc["fpr"]) == len(roc["tpr"]) == len(roc["thresholds"]) <= 500
        assert len(pr["precision"]) == len(pr["recall"]) == len(pr["thresholds"]) <= 500
        assert (roc["fpr"][0], roc["tpr"][0]) == (0.0, 0.0) and (roc["fpr"][-1], roc["tpr"][-1]) == (1.0, 1.0)
        assert roc["thresholds"][0] is None  # "above every score"
        assert pr["recall"][0] == 1.0 and (pr["recall"][-1], pr["precision"][-1]) == (0.0, 1.0)
        assert pr["thresholds"][-1] is None
        truth = roc_auc_score(y, s)
        assert np.trapezoid(roc["tpr"], roc["fpr"]) == pytest.approx(truth, abs=0.01)
        assert c["auc"] == pytest.approx(truth, abs=1e-12)
        assert c["average_precision"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        # thresholds are real scores, decreasing along the ROC curve
        t = [v for v in roc["thresholds"] if v is not None]
        assert all(a >= b for a, b in zip(t, t[1:]))
        assert set(t) <= set(s.tolist())
    assert out["n"] == level_arrays(items, "probe")[level][0].size
    assert out["prevalence"] == pytest.approx(out["n_pos"] / out["n"])


def test_curves_are_thinned_only_when_long():
    items = synthetic_items(400, 50, seed=1)
    long_ = curves(items, "token")["scores"]["probe"]["roc"]
    full = curves(items, "token", max_points=10**9)["scores"]["probe"]["roc"]
    assert len(full["fpr"]) > 500 and len(long_["fpr"]) <= 500
    small = synthetic_items(5, 20, seed=2)
    y, s = level_arrays(small, "probe")["span_max"]
    c = curves(small, "span_max")["scores"]["probe"]
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    assert c["roc"]["fpr"] == pytest.approx(fpr.tolist()) and c["roc"]["tpr"] == pytest.approx(tpr.tolist())


def test_downsample_curve_keeps_endpoints_and_bound():
    x = np.sort(np.random.default_rng(0).random(5000))
    x[0], x[-1] = 0.0, 1.0
    y = np.sqrt(x)
    idx = downsample_curve(x, y, 100)
    assert idx[0] == 0 and idx[-1] == 4999 and len(idx) <= 100
    assert np.all(np.diff(idx) > 0)
    assert np.trapezoid(y[idx], x[idx]) == pytest.approx(2 / 3, abs=1e-3)
    assert downsample_curve([0, 1], [0, 1], 100).tolist() == [0, 1]


def test_curves_with_infinite_baseline_and_single_class():
    items = synthetic_items(30, 20, seed=3)
    items[0].logprobs[5] = -np.inf  # -logprob = +inf: sklearn would reject it
    out = strict_json(curves(items, "token"))
    y, s = level_arrays(items, "neg_logprob")["token"]
    assert out["scores"]["logprob"]["auc"] == pytest.approx(auc_score(y, s))
    one_class = [ItemScores([0, 0], [-1, -1], [], [0.2, 0.3], [0, 0], [0, 0])]
    out = strict_json(curves(one_class, "token"))
    assert out["scores"] == {"probe": None, "logprob": None, "entropy": None}
    no_probe = [ItemScores([0, 1], [-1, -1], [], None, [-1, -2], [0, 1])]
    out = strict_json(curves(no_probe, "token"))
    assert out["scores"]["probe"] is None and out["scores"]["entropy"]["auc"] == 1.0


# --------------------------------------------------------------------------- histograms / reliability


@pytest.mark.parametrize("which", ["probe", "neg_logprob", "entropy"])
@pytest.mark.parametrize("level", ["token", "span_max"])
def test_histograms_sum_to_counts(level, which):
    items = synthetic_items(50, 30, seed=4)
    items[1].logprobs[3] = -np.inf
    out = strict_json(score_histograms(items, level, bins=20, which=which))
    y, _ = level_arrays(items, which)[level]
    assert len(out["edges"]) == 21 and len(out["centers"]) == 20
    for c in ("0", "1"):
        assert len(out["counts"][c]) == 20
        assert sum(out["counts"][c]) == out["n"][c] == int(np.count_nonzero(y == int(c)))
    if which == "probe":
        assert out["edges"][0] == 0.0 and out["edges"][-1] == 1.0


def test_histogram_hand_case():
    items = [ItemScores([0, 0, 1, 1, 1], [-1] * 5, [], [0.0, 0.3, 0.5, 0.99, 1.0], [0] * 5, [0] * 5)]
    out = score_histograms(items, "token", bins=2)
    assert out["counts"] == {"0": [2, 0], "1": [0, 3]}  # 0.5 and 1.0 fall in the upper bin


def test_reliability_matches_metrics():
    items = synthetic_items(40, 30, seed=5)
    y, s = level_arrays(items, "probe")["span_max"]
    out = strict_json(reliability(items, "span_max", n_bins=10))
    assert out["bins"] == reliability_bins(y, s, 10)
    assert out["ece"] == pytest.approx(expected_calibration_error(y, s, 10))
    assert out["n"] == y.size


# --------------------------------------------------------------------------- threshold table


@pytest.mark.parametrize("level", ["token", "span_max"])
def test_threshold_table_equals_binary_metrics(level):
    items = synthetic_items(60, 30, seed=6, round_to=2)  # many scores exactly on grid points
    out = strict_json(threshold_table(items, level))
    y, s = level_arrays(items, "probe")[level]
    assert len(out["thresholds"]) == 101
    assert out["thresholds"][7] == 0.07 and out["thresholds"][-1] == 1.0
    for i, t in enumerate(out["thresholds"]):
        ref = binary_metrics(y, s, t)
        for key in ("precision", "recall", "f1"):
            assert out[key][i] == pytest.approx(ref[key]) if ref[key] is not None else out[key][i] is None
        neg = s[y == 0]
        assert out["fpr"][i] == pytest.approx(np.mean(neg >= t))
        assert out["tp"][i] + out["fn"][i] == out["n_pos"]
    assert out["recall_at_fpr_0.1"] == recall_at_fpr(y, s, 0.1)
    assert out["recall_at_fpr_0.01"] == recall_at_fpr(y, s, 0.01)
    assert out["auc"] == pytest.approx(auc_score(y, s))


def test_threshold_table_undefined_values_match_binary_metrics():
    only_neg = [ItemScores([0, 0], [-1, -1], [], [0.2, 0.6], [0, 0], [0, 0])]
    out = strict_json(threshold_table(only_neg, "token"))
    for i, t in enumerate(out["thresholds"]):
        ref = binary_metrics([0, 0], [0.2, 0.6], t)
        assert (out["precision"][i], out["recall"][i], out["f1"][i]) == (ref["precision"], ref["recall"], ref["f1"])
    assert out["recall_at_fpr_0.1"] is None


# --------------------------------------------------------------------------- conformal


def test_conformal_hand_examples():
    # n = 9, alpha = 0.1: k = ceil(10 * 0.9) = 9 -> the largest score; bound (10-9)/10 = 0.1
    scores = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6]
    r = strict_json(conformal_threshold(scores, 0.1))
    assert (r["rank_k"], r["threshold"], r["n_calibration"]) == (9, 0.9, 9)
    assert r["fpr_bound"] == pytest.approx(0.1) and not r["never_flags"]
    assert "score > 0.9" in r["guarantee_text"] and "marginal" in r["guarantee_text"]
    # n = 7, alpha = 0.25: k = ceil(8 * 0.75) = 6 -> the 6th smallest of 1..7 is 6
    r = conformal_threshold([5, 1, 4, 2, 7, 3, 6], 0.25)
    assert (r["rank_k"], r["threshold"]) == (6, 6.0)
    assert r["fpr_bound"] == pytest.approx(2 / 8)
    # n = 19, alpha = 0.1: k = ceil(20 * 0.9) = 18
    r = conformal_threshold(np.arange(1, 20) / 20, 0.1)
    assert (r["rank_k"], r["threshold"]) == (18, 0.9)
    # n = 8, alpha = 0.1: k = ceil(9 * 0.9) = 9 > 8 -> +inf, never flag; 9 negatives needed
    r = strict_json(conformal_threshold(np.linspace(0, 1, 8), 0.1))
    assert r["threshold"] is None and r["never_flags"] and r["rank_k"] == 9 and r["min_calibration"] == 9
    assert "+inf" in r["guarantee_text"]
    assert empirical_fpr([0.5, 0.99, 1.0], r["threshold"]) == 0.0
    assert conformal_threshold([], 0.1)["never_flags"]
    with pytest.raises(ValueError):
        conformal_threshold([0.1, np.nan], 0.1)
    with pytest.raises(ValueError):
        conformal_threshold([0.1], 0.0)


def test_empirical_fpr_is_strict():
    assert empirical_fpr([0.1, 0.5, 0.5, 0.9], 0.5) == 0.25
    assert empirical_fpr([], 0.5) is None
    assert empirical_fpr([0.1, 0.2], None) == 0.0


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_conformal_guarantee_holds_on_average(alpha, tied):
    """Random calibration/test splits of exchangeable negatives: mean test FPR <= alpha."""
    rng = np.random.default_rng(42)
    n_cal, n_test, reps = 60, 200, 2000
    fprs = []
    for _ in range(reps):
        pool = rng.beta(2, 5, n_cal + n_test)
        if tied:
            pool = np.round(pool, 1)  # heavy ties: only a strict > keeps the promise
        perm = rng.permutation(pool.size)
        r = conformal_threshold(pool[perm[:n_cal]], alpha)
        fprs.append(empirical_fpr(pool[perm[n_cal:]], r["threshold"]))
    mean = float(np.mean(fprs))
    assert mean <= alpha + 0.005
    if not tied:  # and not wastefully conservative: ~(n+1-k)/(n+1) for continuous scores
        k = math.ceil((n_cal + 1) * (1 - alpha))
        assert mean == pytest.approx((n_cal + 1 - k) / (n_cal + 1), abs=0.01)


def test_conformal_from_items_calibrates_on_keys():
    items = synthetic_items(200, 30, seed=7)
    keys = [f"g{i}" for i in range(len(items))]
    cal_keys = set(keys[:120]) | {"not-a-key"}
    r = strict_json(conformal_from_items(items, "span_max", 0.1, cal_keys, keys))
    y_c, s_c = level_arrays(items[:120], "probe")["span_max"]
    assert r["threshold"] == conformal_threshold(s_c[y_c == 0], 0.1)["threshold"]
    assert (r["n_calibration_generations"], r["n_held_out_generations"]) == (120, 80)
    assert r["unknown_calibration_keys"] == 1
    y_t, s_t = level_arrays(items[120:], "probe")["span_max"]
    assert r["held_out"]["fpr"] == empirical_fpr(s_t[y_t == 0], r["threshold"])
    assert r["held_out"]["recall"] == pytest.approx(np.mean(s_t[y_t == 1] > r["threshold"]))
    assert r["held_out"]["fpr"] < 0.2 and "correlated" in r["guarantee_text"]
    with pytest.raises(ValueError):
        conformal_from_items(items, "span_max", 0.1, cal_keys, keys[:-1])


# --------------------------------------------------------------------------- compare probes


def paired_probe_items(n_items=150, n_tokens=40, d_a=1.0, d_b=1.5, seed=0):
    """A and B on the same generations; B = A + (d_b - d_a) on hallucinated tokens.

    Every 4th token is a single-token span, so span_max scores are token scores and both
    levels share the population: negatives N(0, 1), positives N(d, 1) -> AUC = Phi(d/sqrt 2),
    recall@10% FPR = Phi(d - z_0.9).
    """
    rng = np.random.default_rng(seed)
    a_items, b_items = [], []
    for _ in range(n_items):
        span_pos = np.arange(0, n_tokens, 4)
        span_labels = rng.integers(0, 2, span_pos.size)
        span_ids = np.full(n_tokens, -1)
        span_ids[span_pos] = np.arange(span_pos.size)
        labels = np.zeros(n_tokens, dtype=int)
        labels[span_pos] = span_labels
        base = rng.normal(size=n_tokens)
        sa = base + d_a * labels
        sb = sa + (d_b - d_a) * labels
        z = np.zeros(n_tokens)
        a_items.append(ItemScores(labels, span_ids, span_labels, 1 / (1 + np.exp(-sa)), z, z))
        b_items.append(ItemScores(labels, span_ids, span_labels, 1 / (1 + np.exp(-sb)), z, z))
    return a_items, b_items


def test_compare_probes_ci_contains_true_delta():
    d_a, d_b = 1.0, 1.5
    a, b = paired_probe_items(d_a=d_a, d_b=d_b)
    out = strict_json(compare_probes(a, b, n_boot=400, seed=0))
    true = {
        "auc": norm.cdf(d_b / math.sqrt(2)) - norm.cdf(d_a / math.sqrt(2)),
        "recall_at_fpr_0.1": norm.cdf(d_b - norm.ppf(0.9)) - norm.cdf(d_a - norm.ppf(0.9)),
    }
    for level in ("token", "span_max"):
        ya, sa = level_arrays(a, "probe")[level]
        _, sb = level_arrays(b, "probe")[level]
        for metric, delta in true.items():
            row = out[level][metric]
            ref = auc_score if metric == "auc" else recall_at_fpr
            assert row["a"] == pytest.approx(ref(ya, sa)) and row["b"] == pytest.approx(ref(ya, sb))
            assert row["delta"] == pytest.approx(row["b"] - row["a"])
            lo, hi = row["ci"]
            assert lo <= delta <= hi, (level, metric, lo, delta, hi)
            assert lo > 0  # B's improvement is detected
            assert row["n_valid"] == 400 and row["prob_b_better"] > 0.95


def test_compare_probes_is_deterministic_per_seed_and_paired():
    a, b = paired_probe_items(n_items=40, seed=1)
    first = compare_probes(a, b, n_boot=60, seed=3)
    assert compare_probes(a, b, n_boot=60, seed=3) == first
    assert compare_probes(a, b, n_boot=60, seed=4)["token"]["auc"]["ci"] != first["token"]["auc"]["ci"]
    same = compare_probes(a, a, n_boot=30, seed=0)  # a probe against itself: delta exactly 0
    assert same["span_max"]["auc"]["ci"] == [0.0, 0.0] and same["span_max"]["auc"]["prob_b_better"] == 0.0
    other = paired_probe_items(n_items=40, seed=2)[0]
    with pytest.raises(ValueError):
        compare_probes(a, other, n_boot=10)
    with pytest.raises(ValueError):
        compare_probes(a, b[:-1], n_boot=10)


# --------------------------------------------------------------------------- layers


def test_layer_auc_ci_rows():
    per_layer = {layer: synthetic_items(40, 30, seed=layer, signal=0.5 * layer) for layer in (3, 1, 2)}
    rows = strict_json(layer_auc_ci(per_layer, n_boot=40, seed=0))
    assert [r["layer"] for r in rows] == [1, 2, 3]
    for r in rows:
        items = per_layer[r["layer"]]
        for lv in ("token", "span_max"):
            y, s = level_arrays(items, "probe")[lv]
            assert r[f"{lv}_auc"] == pytest.approx(auc_score(y, s))
            assert r[f"{lv}_ci"] == list(bootstrap_ci(items, level_metric(lv, "auc"), n_boot=40, seed=0))
            assert r[f"{lv}_ci"][0] <= r[f"{lv}_ci"][1]
    assert rows[0]["span_max_auc"] < rows[2]["span_max_auc"]


def test_layer_token_matrix():
    rng = np.random.default_rng(0)
    hidden = {0: rng.normal(size=(7, 4)).astype(np.float32), 2: torch.randn(7, 4), 5: rng.normal(size=(7, 4))}
    probes = {
        0: LinearProbe.from_weights(np.array([1.0, 0, 0, 0]), 0.0),
        2: LinearProbe.from_weights(np.array([0, -1.0, 0.5, 0]), 0.3),
        9: LinearProbe.from_weights(np.ones(4), 0.0),
    }
    out = strict_json(layer_token_matrix(hidden, probes))
    assert out["layers"] == [0, 2] and out["n_tokens"] == 7
    assert out["missing_hidden"] == [9] and out["missing_probe"] == [5]
    assert out["matrix"][0] == pytest.approx((1 / (1 + np.exp(-hidden[0][:, 0]))).tolist(), abs=1e-6)
    h2 = hidden[2].numpy()
    assert out["matrix"][1] == pytest.approx((1 / (1 + np.exp(-(h2 @ [0, -1.0, 0.5, 0] + 0.3)))).tolist(), abs=1e-6)
    with pytest.raises(ValueError):
        layer_token_matrix({0: np.zeros((3, 4)), 2: np.zeros((4, 4))}, probes)


# --------------------------------------------------------------------------- error browser


def test_top_errors_hand_case():
    text0 = "Paris is in France. Lyon was founded in 1999 by Napoleon."
    text1 = "X" * 100 + " Marie Curie was born in Berlin." + "Y" * 100
    # generation 0: spans Paris(0), France(1), 1999(2), Napoleon(3); tokens = one per span + background
    c0 = [(0, 5), (12, 18), (40, 44), (48, 56)]
    it0 = ItemScores(
        labels=[0, 0, 0, 1, 1, 0],
        span_ids=[0, -1, 1, 2, 3, -1],
        span_labels=[0, 0, 1, 1],
        probe=[0.9, 0.99, 0.4, 0.2, 0.8, 0.1],  # Paris FP 0.9; France ok; 1999 FN 0.2; Napoleon ok
        logprobs=[0] * 6,
        entropies=[0] * 6,
    )
    # generation 1: "Marie Curie" gold 0 scored 0.95 (two tokens, max), "Berlin" gold 1 scored 0.05,
    # a third span with no token (not scored)
    s1 = 101
    c1 = [(s1, s1 + 11), (s1 + 24, s1 + 30), (0, 1)]
    it1 = ItemScores([0, 0, 1], [0, 0, 1], [0, 1, 1], [0.3, 0.95, 0.05], [0] * 3, [0] * 3)
    out = strict_json(top_errors([it0, it1], ["a", "b"], [text0, text1], [c0, c1], threshold=0.5, k=20))
    assert out["n_spans"] == 6 and out["n_false_positives"] == 2 and out["n_false_negatives"] == 2
    fp = [(e["key"], e["span"], e["score"]) for e in out["false_positives"]]
    fn = [(e["key"], e["span"], e["score"]) for e in out["false_negatives"]]
    assert fp == [("b", 0, 0.95), ("a", 0, 0.9)]
    assert fn == [("b", 1, 0.05), ("a", 2, 0.2)]
    top = out["false_positives"][0]
    assert (top["start"], top["end"], top["label"], top["generation"]) == (s1, s1 + 11, 0, 1)
    assert top["span_text"] == "Marie Curie"
    assert top["before"] == "X" * 59 + " " and top["after"] == " was born in Berlin." + "Y" * 40
    assert top["context"] == top["before"] + top["span_text"] + top["after"] and len(top["context"]) == 131
    paris = out["false_positives"][1]
    assert paris["before"] == "" and paris["context"] == text0[:65]
    assert out["false_negatives"][1]["span_text"] == "1999"
    assert len(top_errors([it0, it1], ["a", "b"], [text0, text1], [c0, c1], 0.5, k=1)["false_positives"]) == 1
    with pytest.raises(ValueError):
        top_errors([it0], ["a"], [text0], [c0[:3]], 0.5)


def test_span_max_scores():
    it = ItemScores([0, 1, 1, 0], [0, 1, 1, -1], [0, 1, 0], [0.2, 0.4, 0.7, 0.9], [0] * 4, [0] * 4)
    out = span_max_scores(it)
    assert out[:2].tolist() == [0.2, 0.7] and np.isnan(out[2])


# --------------------------------------------------------------------------- label suspects


def test_label_error_suspects_finds_flipped_spans():
    rng = np.random.default_rng(0)
    H, T = 16, 30
    direction = rng.normal(size=H)
    direction /= np.linalg.norm(direction)
    examples, flipped = [], set()
    flip_at = set(rng.choice(80 * 3, size=5, replace=False).tolist())
    for g in range(80):
        span_labels = rng.integers(0, 2, 3)
        span_ids = np.full(T, -1)
        true_tok = np.zeros(T, dtype=int)
        for k in range(3):
            span_ids[k * 10 + 3 : k * 10 + 6] = k
            true_tok[k * 10 + 3 : k * 10 + 6] = span_labels[k]
        hidden = rng.normal(scale=0.5, size=(T, H)) + np.where(true_tok == 1, 2.0, -2.0)[:, None] * direction
        gold_spans = span_labels.copy()
        for k in range(3):
            if g * 3 + k in flip_at:  # an annotation error: span and its tokens mislabelled
                gold_spans[k] = 1 - gold_spans[k]
                flipped.add((f"gen{g}", k))
        labels = np.where(span_ids >= 0, gold_spans[np.maximum(span_ids, 0)], 0)
        examples.append((hidden.astype(np.float32), labels, span_ids, gold_spans, f"gen{g}"))
    suspects = strict_json(
        label_error_suspects(examples, n_folds=5, config=TrainConfig(min_steps=100, max_auto_epochs=20), top=10)
    )
    found = {(s["key"], s["span"]) for s in suspects}
    assert len(found & flipped) >= 4, (suspects, flipped)
    confs = [s["confidence"] for s in suspects]
    assert confs == sorted(confs, reverse=True) and all(c > 0.5 for c in confs)
    for s in suspects:
        assert s["kind"] == ("gold_1_low_score" if s["label"] == 1 else "gold_0_high_score")
        words = suspect_kind_words(s["kind"])  # the table's kind column: words, not codes (#25 friction 11)
        assert "_" not in words and ("hallucinated" if s["label"] == 1 else "supported") in words
        assert s["confidence"] == pytest.approx(abs(s["score"] - s["label"]))
        assert 0 <= s["fold"] < 5


def test_weighted_roc_matches_scikit_learn_on_resamples():
    """The bootstrap's presorted ROC equals roc_curve on the concatenated drawn copies."""
    from sklearn.metrics import auc as sk_auc
    from sklearn.metrics import roc_curve

    from core.analysis.comparison import WeightedRoc

    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 30, size=40)
    owner = np.repeat(np.arange(40), sizes)
    y = (rng.random(owner.size) < 0.3).astype(np.int8)
    s = np.round(rng.random(owner.size), 2)  # ties on purpose
    roc = WeightedRoc(y, s, owner)
    for _ in range(20):
        idx = rng.integers(0, 40, size=40)
        pick = np.concatenate([np.nonzero(owner == i)[0] for i in idx])
        fpr, tpr, _ = roc_curve(y[pick], s[pick], drop_intermediate=False)
        auc, recall = roc.auc_and_recall(np.bincount(idx, minlength=40).astype(float))
        assert auc == pytest.approx(sk_auc(fpr, tpr), abs=1e-12)
        assert recall == pytest.approx(tpr[fpr <= 0.1].max(), abs=1e-12)
    assert WeightedRoc(np.zeros(5, np.int8), np.arange(5.0), np.zeros(5, int)).auc_and_recall(np.ones(1)) == (
        None,
        None,
    )

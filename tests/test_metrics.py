"""Tests of core/metrics.py against hand-worked examples and brute-force definitions."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score

from core.probes.metrics import (
    ItemScores,
    auc_score,
    binary_metrics,
    bootstrap_ci,
    evaluate_items,
    expected_calibration_error,
    level_arrays,
    level_metric,
    recall_at_fpr,
    reliability_bins,
)
from tests.support.scores import synthetic_items

# --------------------------------------------------------------------------- fixtures / helpers


pytestmark = pytest.mark.usefixtures("warnings_are_errors")


def item(labels, span_ids, span_labels, probe=None, logprobs=None, entropies=None) -> ItemScores:
    n = len(labels)
    return ItemScores(
        labels=np.array(labels),
        span_ids=np.array(span_ids),
        span_labels=np.array(span_labels),
        probe=None if probe is None else np.array(probe),
        logprobs=np.zeros(n) if logprobs is None else np.array(logprobs),
        entropies=np.zeros(n) if entropies is None else np.array(entropies),
    )


def assert_plain_json(obj, path="root"):
    """Only dict/list/str/int/float/bool/None, floats are real python floats and finite."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str, f"{path}: key {k!r}"
            assert_plain_json(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            assert_plain_json(v, f"{path}[{i}]")
    else:
        assert obj is None or type(obj) in (str, int, float, bool), f"{path}: {type(obj)}"
        if type(obj) is float:
            assert np.isfinite(obj), f"{path}: {obj}"


# --------------------------------------------------------------------------- AUC / recall@FPR

# Hand-worked ROC example: 5 positives, 10 negatives, a positive and a negative tied at 0.5.
#   descending: .95P .9P .85N .7P .5(P,N) .4N .3N .2P .1N .08N .06N .04N .02N .01N
#   ROC points (fp, tp): (0,0) (0,1) (0,2) (1,2) (1,3) (2,4) (3,4) (4,4) (4,5) ... (10,5)
#   FPR = fp/10, TPR = tp/5.
ROC_POS = [0.95, 0.9, 0.7, 0.5, 0.2]
ROC_NEG = [0.85, 0.5, 0.4, 0.3, 0.1, 0.08, 0.06, 0.04, 0.02, 0.01]
ROC_Y = [1] * 5 + [0] * 10
ROC_S = ROC_POS + ROC_NEG


def test_auc_hand_examples():
    assert auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc_score([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert auc_score([1, 0], [0.9, 0.1]) == pytest.approx(1.0)
    assert auc_score([1, 0], [0.1, 0.9]) == pytest.approx(0.0)
    # negatives below each positive (+1/2 per tie): 10 + 10 + 9 + 8.5 + 6 = 43.5 of 50
    assert auc_score(ROC_Y, ROC_S) == pytest.approx(0.87)


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 1)  # many ties
    assert auc_score(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_recall_at_fpr_hand_example():
    assert recall_at_fpr(ROC_Y, ROC_S, 0.1) == pytest.approx(0.6)  # (fp=1, tp=3)
    assert recall_at_fpr(ROC_Y, ROC_S, 0.01) == pytest.approx(0.4)  # (fp=0, tp=2)
    assert recall_at_fpr(ROC_Y, ROC_S, 0.0) == pytest.approx(0.4)
    # fp=1.5 is not a curve point: the tied step (1,3)->(2,4) is not interpolated (would be 0.7)
    assert recall_at_fpr(ROC_Y, ROC_S, 0.15) == pytest.approx(0.6)
    assert recall_at_fpr(ROC_Y, ROC_S, 0.2) == pytest.approx(0.8)  # (fp=2, tp=4)
    assert recall_at_fpr(ROC_Y, ROC_S, 0.4) == pytest.approx(1.0)  # (fp=4, tp=5)
    assert recall_at_fpr(ROC_Y, ROC_S, 1.0) == pytest.approx(1.0)
    assert recall_at_fpr(ROC_Y, ROC_S) == recall_at_fpr(ROC_Y, ROC_S, 0.1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("max_fpr", [0.0, 0.01, 0.1, 0.25])
def test_recall_at_fpr_matches_brute_force(seed, max_fpr):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    s = np.round(rng.random(120) + 0.4 * y, 2)
    n_pos, n_neg = (y == 1).sum(), (y == 0).sum()
    best = 0.0  # threshold +inf: nothing predicted positive
    for t in np.unique(s):
        pred = s >= t
        fpr = (pred & (y == 0)).sum() / n_neg
        if fpr <= max_fpr:
            best = max(best, (pred & (y == 1)).sum() / n_pos)
    assert recall_at_fpr(y, s, max_fpr) == pytest.approx(best)


def test_infinite_scores_rank_correctly():
    # -logprob of a token with logprob -inf is +inf: the riskiest, not an error.
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, np.inf]
    assert auc_score(y, s) == pytest.approx(0.75)
    assert auc_score([0, 1, 1], [-np.inf, 0.0, np.inf]) == pytest.approx(1.0)
    assert recall_at_fpr(y, s, 0.0) == pytest.approx(0.5)


def test_nan_scores_raise():
    with pytest.raises(ValueError, match="NaN"):
        auc_score([0, 1], [0.1, np.nan])


def test_labels_must_be_binary():
    with pytest.raises(ValueError, match="0 or 1"):
        binary_metrics([0, 1, -1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        binary_metrics([0, 1], [0.1, 0.2, 0.3])


# --------------------------------------------------------------------------- calibration


def test_ece_hand_example():
    y = [0, 1, 0, 1, 0]
    p = [0.05, 0.15, 0.15, 0.85, 0.95]
    # 10 bins: |.05-0|*1 + |.15-.5|*2 + |.85-1|*1 + |.95-0|*1 = 1.85, over 5
    assert expected_calibration_error(y, p, 10) == pytest.approx(0.37)
    # 2 bins: [0,.5): mean .11667, frac 1/3 -> .21667*3 = .65 ; [.5,1]: |.9-.5|*2 = .8
    assert expected_calibration_error(y, p, 2) == pytest.approx(0.29)
    # 1 bin: |mean(p) - mean(y)| = |0.43 - 0.4|
    assert expected_calibration_error(y, p, 1) == pytest.approx(0.03)


def test_ece_perfectly_calibrated_is_zero():
    p = [0.25] * 4 + [0.75] * 4 + [0.05] * 20
    y = [1, 0, 0, 0] + [1, 1, 1, 0] + [1] + [0] * 19
    assert expected_calibration_error(y, p) == pytest.approx(0.0, abs=1e-12)
    # ...and a confidently wrong model is maximally miscalibrated
    assert expected_calibration_error([0, 1], [1.0, 0.0]) == pytest.approx(1.0)


def test_reliability_bins_content_and_edges():
    y = [0, 1, 0, 1, 0, 1]
    p = [0.0, 0.15, 0.15, 0.85, 0.95, 1.0]
    bins = reliability_bins(y, p, n_bins=10)
    assert len(bins) == 10
    assert bins[0]["bin_lo"] == 0.0 and bins[-1]["bin_hi"] == 1.0
    assert [b["count"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 2]  # 1.0 is in the last bin
    assert bins[1]["mean_prob"] == pytest.approx(0.15)
    assert bins[1]["frac_pos"] == pytest.approx(0.5)
    assert bins[9]["mean_prob"] == pytest.approx(0.975)
    assert bins[9]["frac_pos"] == pytest.approx(0.5)
    assert bins[4]["mean_prob"] is None and bins[4]["frac_pos"] is None
    assert_plain_json(bins)
    # bins are [lo, hi): a probability exactly on an inner edge goes to the upper bin
    assert [b["count"] for b in reliability_bins([1, 0], [0.5, 0.25], n_bins=4)] == [0, 1, 1, 0]
    # ECE is the count-weighted gap of these bins
    gaps = sum(b["count"] * abs(b["mean_prob"] - b["frac_pos"]) for b in bins if b["count"])
    assert expected_calibration_error(y, p, 10) == pytest.approx(gaps / len(p))


def test_reliability_bins_match_sklearn_calibration_curve():
    rng = np.random.default_rng(7)
    p = rng.random(2000)
    y = (rng.random(2000) < p**1.5).astype(int)
    frac_pos, mean_prob = calibration_curve(y, p, n_bins=10, strategy="uniform")
    bins = [b for b in reliability_bins(y, p, 10) if b["count"]]
    assert [b["frac_pos"] for b in bins] == pytest.approx(frac_pos)
    assert [b["mean_prob"] for b in bins] == pytest.approx(mean_prob)


def test_ece_rejects_non_probabilities_and_empty_is_none():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error([0, 1], [0.5, 1.5])
    assert expected_calibration_error([], []) is None


# --------------------------------------------------------------------------- binary_metrics


def test_binary_metrics_hand_example():
    y = [0, 0, 1, 1]
    s = [0.1, 0.6, 0.35, 0.8]
    m = binary_metrics(y, s)  # predicted positive: s >= 0.5 -> [0, 1, 0, 1]
    assert m["n"] == 4 and m["n_pos"] == 2
    assert m["auc"] == pytest.approx(0.75)
    assert m["threshold"] == 0.5
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["ece"] == pytest.approx(expected_calibration_error(y, s))
    # the threshold is inclusive: 0.35 -> [0, 1, 1, 1]
    m = binary_metrics(y, s, threshold=0.35)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(0.8)


def test_binary_metrics_without_threshold_has_only_ranking_metrics():
    m = binary_metrics([0, 1, 1], [-3.0, 5.0, 2.0], threshold=None)
    assert set(m) == {"n", "n_pos", "auc", "recall_at_fpr_0.1", "recall_at_fpr_0.01"}
    assert m["auc"] == pytest.approx(1.0)


def test_binary_metrics_non_probability_scores_get_no_ece():
    m = binary_metrics([0, 1], [-1.0, 2.0], threshold=0.5)
    assert m["ece"] is None
    assert m["precision"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "y, s",
    [
        ([1, 1, 1], [0.2, 0.6, 0.9]),  # positives only
        ([0, 0, 0], [0.2, 0.6, 0.9]),  # negatives only
        ([0, 0], [0.1, 0.2]),  # negatives only, nothing predicted positive
        ([], []),  # empty
    ],
)
def test_single_class_and_empty_give_none(y, s):
    m = binary_metrics(y, s)
    assert m["auc"] is None
    assert m["recall_at_fpr_0.1"] is None and m["recall_at_fpr_0.01"] is None
    assert auc_score(y, s) is None and recall_at_fpr(y, s) is None
    json.dumps(m, allow_nan=False)
    assert_plain_json(m)


def test_single_class_threshold_metrics():
    m = binary_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert m["precision"] == pytest.approx(1.0)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(0.8)
    assert m["ece"] == pytest.approx((0.8 + 0.4 + 0.1) / 3)
    m = binary_metrics([0, 0], [0.1, 0.2])  # no positives, none predicted
    assert m["precision"] is None and m["recall"] is None and m["f1"] is None
    assert m["ece"] == pytest.approx(0.15)
    m = binary_metrics([0, 0], [0.1, 0.7])  # a false positive, no positives
    assert m["precision"] == pytest.approx(0.0)
    assert m["recall"] is None
    assert m["f1"] == pytest.approx(0.0)
    m = binary_metrics([], [])
    assert m["n"] == 0 and m["n_pos"] == 0
    assert all(m[k] is None for k in ("precision", "recall", "f1", "ece"))


# --------------------------------------------------------------------------- levels


def test_span_max_takes_the_max_over_a_span():
    # span 0 (hallucinated) tokens [.1, .9]: max .9, mean .5, first .1
    # span 1 (supported)    tokens [.7, .7]: max .7, mean .7, first .7
    # Only the max ranks the hallucinated span above the supported one.
    it = item(
        labels=[0, 1, 1, 0, 0, 0],
        span_ids=[-1, 0, 0, -1, 1, 1],
        span_labels=[1, 0],
        probe=[0.99, 0.1, 0.9, 0.0, 0.7, 0.7],
    )
    y, s = level_arrays([it])["span_max"]
    assert y.tolist() == [1, 0]
    assert s.tolist() == pytest.approx([0.9, 0.7])
    m = evaluate_items([it])
    assert m["span_max"]["auc"] == pytest.approx(1.0)
    assert m["span_max"]["n"] == 2 and m["span_max"]["n_pos"] == 1
    # span level: the 4 span tokens: y=[1,1,0,0], s=[.1,.9,.7,.7] -> pairs: .1<.7,.1<.7,.9>.7,.9>.7
    assert m["span"]["n"] == 4
    assert m["span"]["auc"] == pytest.approx(0.5)


def test_span_ids_are_per_item_and_empty_spans_are_skipped():
    a = item([1, 0], [0, 1], [1, 0], probe=[0.8, 0.3])
    # span 1 of b has no token (e.g. it fell past the truncation); span 0 is supported
    b = item([0, 0], [0, -1], [0, 1], probe=[0.5, 0.9])
    y, s = level_arrays([a, b])["span_max"]
    assert y.tolist() == [1, 0, 0]
    assert s.tolist() == pytest.approx([0.8, 0.3, 0.5])
    counts = evaluate_items([a, b])["counts"]
    assert counts == {"generations": 2, "tokens": 4, "spans": 3, "positive_spans": 1}


def test_ignored_tokens_are_excluded():
    # Without the -1 token (score .95, would be a false positive above every positive)
    # the token AUC is 1.0; with it counted as a negative it would be 0.5.
    it = item(
        labels=[-1, 0, 1, 0, 1],
        span_ids=[-1, -1, 0, -1, 1],
        span_labels=[1, 1],
        probe=[0.95, 0.1, 0.9, 0.2, 0.8],
    )
    levels = level_arrays([it])
    y, s = levels["token"]
    assert y.tolist() == [0, 1, 0, 1]
    assert s.tolist() == pytest.approx([0.1, 0.9, 0.2, 0.8])
    m = evaluate_items([it])
    assert m["token"]["n"] == 4
    assert m["token"]["auc"] == pytest.approx(1.0)
    assert m["counts"]["tokens"] == 4


def test_ignored_token_inside_a_span_still_counts_for_span_max_only():
    it = item([0, -1, 0], [0, 0, -1], [0], probe=[0.2, 0.6, 0.1])
    levels = level_arrays([it])
    assert levels["span"][1].tolist() == pytest.approx([0.2])
    assert levels["span_max"][1].tolist() == pytest.approx([0.6])


def test_baselines_from_neg_logprob_and_entropy():
    # Token level: y = [0, 0, 1, 1]
    #   -logprob = [.1, .4, .35, .8] -> AUC 0.75
    #   entropy  = [.8, .35, .4, .1] -> .4 beats .35 only: AUC 0.25
    # Spans: span 0 = tokens 0,1 (label 0), span 1 = tokens 2,3 (label 1)
    #   -logprob span max: [.4, .8] -> AUC 1.0 ; entropy span max: [.8, .4] -> AUC 0.0
    it = item(
        labels=[0, 0, 1, 1],
        span_ids=[0, 0, 1, 1],
        span_labels=[0, 1],
        probe=[0.1, 0.2, 0.3, 0.4],
        logprobs=[-0.1, -0.4, -0.35, -0.8],
        entropies=[0.8, 0.35, 0.4, 0.1],
    )
    y, s = level_arrays([it], "neg_logprob")["token"]
    assert s.tolist() == pytest.approx([0.1, 0.4, 0.35, 0.8])
    b = evaluate_items([it])["baselines"]
    assert b["logprob"]["token"]["auc"] == pytest.approx(0.75)
    assert b["entropy"]["token"]["auc"] == pytest.approx(0.25)
    assert b["logprob"]["span_max"]["auc"] == pytest.approx(1.0)
    assert b["entropy"]["span_max"]["auc"] == pytest.approx(0.0)
    # the headline (top-level) numbers are the span_max ones
    assert b["logprob"]["auc"] == b["logprob"]["span_max"]["auc"]
    assert b["entropy"]["auc"] == b["entropy"]["span_max"]["auc"]
    assert b["logprob"]["recall_at_fpr_0.1"] == pytest.approx(1.0)
    assert b["entropy"]["recall_at_fpr_0.1"] == pytest.approx(0.0)
    # baseline scores are not probabilities: no thresholded metrics
    for name in ("logprob", "entropy"):
        assert "precision" not in b[name]["token"] and "ece" not in b[name]["span_max"]


def test_evaluate_items_shape_and_json():
    items = synthetic_items(20, 50)
    m = evaluate_items(items)
    assert {"token", "span", "span_max", "baselines", "counts"} <= set(m)
    for level in ("token", "span", "span_max"):
        assert {"auc", "recall_at_fpr_0.1", "recall_at_fpr_0.01", "precision", "recall", "f1", "ece"} <= set(m[level])
    for name in ("logprob", "entropy"):
        assert {"auc", "recall_at_fpr_0.1", "token", "span_max"} <= set(m["baselines"][name])
    assert m["counts"]["generations"] == 20
    assert m["counts"]["tokens"] == 20 * 49
    assert m["counts"]["spans"] == 20 * 5
    # the synthetic probe has real signal
    assert m["span_max"]["auc"] > 0.7
    json.dumps(m, allow_nan=False)
    assert_plain_json(m)
    # and the values agree with sklearn on the flattened arrays
    y, s = level_arrays(items)["token"]
    assert m["token"]["auc"] == pytest.approx(roc_auc_score(y, s))


def test_evaluate_degenerate_inputs_are_json():
    single_class = [item([0, 0, 0], [0, 0, -1], [0], probe=[0.1, 0.2, 0.3])]
    for items in ([], single_class):
        m = evaluate_items(items)
        json.dumps(m, allow_nan=False)
        assert_plain_json(m)
        assert m["span_max"]["auc"] is None
        assert m["baselines"]["logprob"]["auc"] is None
    assert evaluate_items([])["counts"] == {"generations": 0, "tokens": 0, "spans": 0, "positive_spans": 0}


def test_baselines_only_when_probe_missing():
    it = item([0, 1], [0, 1], [0, 1], probe=None, logprobs=[-0.1, -2.0], entropies=[0.1, 1.0])
    m = evaluate_items([it])
    assert "token" not in m and "span_max" not in m
    assert m["baselines"]["logprob"]["auc"] == pytest.approx(1.0)
    json.dumps(m, allow_nan=False)
    with pytest.raises(ValueError, match="probe"):
        evaluate_items([it, item([0], [-1], [], probe=[0.5])])


def test_item_scores_validation_and_dtypes():
    it = item([0, 1, -1], [-1, 0, -1], [1], probe=[0.1, 0.9, 0.5])
    assert it.labels.dtype == np.int8 and it.span_ids.dtype == np.int32 and it.span_labels.dtype == np.int8
    with pytest.raises(ValueError, match="probe"):
        item([0, 1], [-1, -1], [], probe=[0.1])
    with pytest.raises(ValueError, match="span_ids"):
        item([0, 1], [-1, 1], [1])  # span 1 has no label
    with pytest.raises(ValueError, match="labels"):
        item([0, 2], [-1, -1], [])


def test_evaluate_is_fast_on_100k_tokens():
    items = synthetic_items(500, 200, seed=1)  # 100,000 tokens, 10,000 spans
    evaluate_items(items[:5])  # warm-up (imports, first calls)
    t0 = time.perf_counter()
    m = evaluate_items(items)
    elapsed = time.perf_counter() - t0
    assert m["counts"]["tokens"] == 500 * 199
    assert elapsed < 1.0, f"evaluate_items took {elapsed:.2f}s on 100k tokens"


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_and_is_deterministic():
    items = synthetic_items(60, 40, seed=2)
    fn = level_metric("span_max", "auc")
    point = fn(items)
    lo, hi = bootstrap_ci(items, fn, n_boot=200, seed=0)
    assert lo < point < hi
    assert 0.0 <= lo and hi <= 1.0
    assert hi - lo < 0.3
    assert bootstrap_ci(items, fn, n_boot=200, seed=0) == (lo, hi)
    assert bootstrap_ci(items, fn, n_boot=200, seed=1) != (lo, hi)
    # narrower interval at a larger alpha
    lo90, hi90 = bootstrap_ci(items, fn, n_boot=200, seed=0, alpha=0.2)
    assert lo <= lo90 and hi90 <= hi


def test_bootstrap_resamples_generations_not_tokens():
    items = synthetic_items(10, 20)
    ids = {id(it) for it in items}
    seen_sizes, distinct = [], []

    def metric(sample):
        seen_sizes.append(len(sample))
        assert all(id(it) in ids for it in sample)  # whole generations, untouched
        distinct.append(len({id(it) for it in sample}))
        return 0.5

    assert bootstrap_ci(items, metric, n_boot=50) == (0.5, 0.5)
    assert seen_sizes == [10] * 50
    assert min(distinct) < 10  # drawn with replacement


def test_bootstrap_skips_undefined_resamples():
    items = [item([0, 1], [0, 1], [0, 1], probe=[0.2, 0.9]), item([0], [0], [0], probe=[0.1])]
    lo, hi = bootstrap_ci(items, level_metric("span_max", "auc"), n_boot=100)
    # every defined resample separates the single positive span perfectly
    assert (lo, hi) == (1.0, 1.0)
    only_negatives = [item([0], [0], [0], probe=[0.1])] * 3
    assert bootstrap_ci(only_negatives, level_metric(), n_boot=20) == (None, None)
    assert bootstrap_ci([], level_metric(), n_boot=20) == (None, None)


def test_level_metric_other_metrics_and_baselines():
    items = synthetic_items(10, 30)
    m = evaluate_items(items)
    assert level_metric("token", "recall_at_fpr_0.1")(items) == m["token"]["recall_at_fpr_0.1"]
    assert level_metric("span", "f1", threshold=0.5)(items) == m["span"]["f1"]
    assert level_metric("span_max", "auc", which="entropy")(items) == m["baselines"]["entropy"]["auc"]
    with pytest.raises(ValueError):
        level_metric("span", "f1")(items)  # f1 needs a threshold

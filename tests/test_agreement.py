"""Inter-annotator agreement (core/agreement.py): published examples, hand-worked cases, libraries."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.analysis.agreement import (
    BINARY_CATEGORIES,
    CATEGORIES,
    agreement_report,
    cohen_kappa,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    pair_key,
    span_f1,
    token_categories,
    token_matrix,
)
from core.base.types import Span

NAN = math.nan

# --- published examples -----------------------------------------------------------------

# Fleiss (1971) as tabulated on Wikipedia ("Fleiss' kappa", worked example): 10 subjects,
# 14 raters, 5 categories; cell = number of raters putting the subject in the category.
# Published: P-bar = 0.378, P-e-bar = 0.213, kappa = 0.210.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]

# Krippendorff (2011) "Computing Krippendorff's Alpha-Reliability", example C: 4 observers
# x 12 units, values 1..5, missing data. Published alphas: nominal 0.743, interval 0.849.
# The same data is `cac.raw4raters` in Gwet's irrCAC, whose documented AC1 is 0.77544.
KRIPP_BY_OBSERVER = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]


def _fleiss_raw() -> np.ndarray:
    """The count table as a [subject, rater] matrix (Fleiss' kappa ignores rater identity)."""
    return np.array([[k for k, c in enumerate(row) for _ in range(c)] for row in FLEISS_TABLE], dtype=float)


def _kripp_units() -> np.ndarray:
    return np.array(KRIPP_BY_OBSERVER, dtype=float).T  # units in rows, observers in columns


def test_fleiss_kappa_matches_the_published_fleiss_example():
    assert fleiss_kappa(_fleiss_raw()) == pytest.approx(0.210, abs=5e-4)


def test_fleiss_kappa_matches_statsmodels_on_the_count_table():
    from statsmodels.stats.inter_rater import fleiss_kappa as sm

    assert fleiss_kappa(_fleiss_raw()) == pytest.approx(sm(np.array(FLEISS_TABLE)), abs=1e-12)


def test_krippendorff_alpha_matches_krippendorffs_published_example():
    units = _kripp_units()
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, level="interval") == pytest.approx(0.849, abs=5e-4)


def test_gwet_ac1_matches_irrcac_on_the_krippendorff_data_with_missing_ratings():
    # irrCAC gwet.ac1.raw(cac.raw4raters): pa = 0.8181818, pe = 0.1903212, AC1 = 0.77544.
    # Unit 12 has a single rating: out of p_a, but inside pi_k, as in Gwet (2014).
    assert gwet_ac1(_kripp_units()) == pytest.approx(0.77544, abs=5e-6)


def test_fleiss_kappa_drops_units_not_rated_by_everyone():
    # Units 2-9 are the only ones all four observers rated.
    units = _kripp_units()
    complete = units[~np.isnan(units).any(axis=1)]
    assert complete.shape[0] == 8
    assert fleiss_kappa(units) == fleiss_kappa(complete)


# --- hand-worked two-rater example ------------------------------------------------------

# 10 tokens, binary. Both say 1 on tokens 0-1, both 0 on 3-8; they differ on 2 and 9.
RATER_A = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
RATER_B = [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]


def test_cohen_kappa_hand_example():
    # p_o = 8/10. Marginals: A says 1 on 3/10, B on 3/10.
    # p_e = 0.3*0.3 + 0.7*0.7 = 0.58;  kappa = (0.8 - 0.58) / (1 - 0.58) = 0.22/0.42 = 11/21.
    assert cohen_kappa(RATER_A, RATER_B) == pytest.approx(11 / 21)


def test_gwet_ac1_hand_example_two_raters():
    # p_a = 8/10. pi_1 = (3 + 3) / 20 = 0.3, pi_0 = 0.7, q = 2.
    # p_e = 1/(2-1) * (0.3*0.7 + 0.7*0.3) = 0.42;  AC1 = (0.8 - 0.42) / (1 - 0.42) = 0.38/0.58 = 19/29.
    assert gwet_ac1(np.column_stack([RATER_A, RATER_B])) == pytest.approx(19 / 29)


def test_gwet_ac1_hand_example_with_missing_ratings():
    # Three raters, three units:  u1 = (0, 0, 1), u2 = (1, 1, -), u3 = (0, -, -).
    # p_a over units with >= 2 ratings: u1 = (2*1 + 1*0) / (3*2) = 1/3, u2 = 2/2 = 1 -> p_a = 2/3.
    # pi over units with >= 1 rating:  pi_0 = (2/3 + 0 + 1) / 3 = 5/9, pi_1 = 4/9.
    # p_e = (5/9 * 4/9) + (4/9 * 5/9) = 40/81;  AC1 = (54/81 - 40/81) / (41/81) = 14/41.
    m = np.array([[0, 0, 1], [1, 1, NAN], [0, NAN, NAN]], dtype=float)
    assert gwet_ac1(m) == pytest.approx(14 / 41)


def test_gwet_ac1_counts_unused_categories_of_the_scheme():
    # Same data, q = 4 scheme categories: p_e = (40/81) * (2-1)/(4-1) = 40/243.
    m = np.array([[0, 0, 1], [1, 1, NAN], [0, NAN, NAN]], dtype=float)
    p_e = 40 / 243
    assert gwet_ac1(m, n_categories=4) == pytest.approx((2 / 3 - p_e) / (1 - p_e))


def test_gwet_ac1_stays_defined_for_one_category_of_a_binary_scheme():
    assert gwet_ac1(np.zeros((5, 3)), n_categories=2) == 1.0
    assert gwet_ac1(np.zeros((5, 3))) is None  # q inferred as 1


# --- libraries agree on random data -----------------------------------------------------

_ratings = st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, NAN]), min_size=3, max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ratings, min_size=2, max_size=25))
def test_statistics_match_the_libraries_or_are_none(rows):
    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    m = np.array(rows, dtype=float)
    both = ~np.isnan(m[:, 0]) & ~np.isnan(m[:, 1])
    k = cohen_kappa(m[:, 0], m[:, 1])
    if k is not None:
        assert k == pytest.approx(cohen_kappa_score(m[both, 0], m[both, 1]))
    a = krippendorff_alpha(m)
    if a is not None:
        assert a == pytest.approx(krippendorff.alpha(m.T, level_of_measurement="nominal"))
    for value in (k, a, fleiss_kappa(m), gwet_ac1(m, n_categories=4)):
        assert value is None or (math.isfinite(value) and value <= 1 + 1e-9)


def test_gwet_ac1_without_missing_matches_the_two_rater_formula():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    p_a = np.mean(a == b)
    pi = np.array([(np.sum(a == k) + np.sum(b == k)) / 400 for k in range(3)])
    p_e = np.sum(pi * (1 - pi)) / 2
    assert gwet_ac1(np.column_stack([a, b])) == pytest.approx((p_a - p_e) / (1 - p_e))


# --- undefined -> None --------------------------------------------------------------------


@pytest.mark.parametrize(
    "matrix",
    [
        np.zeros((0, 3)),  # no tokens
        np.array([[0.0], [1.0]]),  # one rater
        np.array([[0, NAN], [NAN, 1], [1, NAN]], dtype=float),  # no token rated twice
        np.full((4, 3), 2.0),  # a single category everywhere
        np.full((4, 2), NAN),  # nothing rated
    ],
)
def test_degenerate_inputs_give_none(matrix):
    assert fleiss_kappa(matrix) is None
    assert krippendorff_alpha(matrix) is None
    assert gwet_ac1(matrix) is None
    if matrix.shape[1] >= 2:
        assert cohen_kappa(matrix[:, 0], matrix[:, 1]) is None


def test_krippendorff_ignores_a_category_seen_only_in_unpairable_units():
    # Pairable units all agree on 0; the lone 1 has no partner: alpha is undefined, not 0/NaN.
    m = np.array([[0, 0], [0, 0], [1, NAN]], dtype=float)
    assert krippendorff_alpha(m) is None


def test_cohen_kappa_uses_only_tokens_both_rated():
    a = [1, 1, 0, 0, NAN, 1]
    b = [1, 1, 0, 0, 0, NAN]
    assert cohen_kappa(a, b) == 1.0


# --- span F1 ------------------------------------------------------------------------------

NS, SUP, II = "Not Supported", "Supported", "Insufficient Information"


def test_span_f1_exact_vs_overlap():
    a = [Span(0, 5, NS), Span(10, 20, SUP), Span(30, 35, NS)]
    b = [Span(0, 5, "hallucinated"), Span(12, 20, SUP), Span(30, 35, SUP)]
    exact = span_f1(a, b, mode="exact")
    assert exact == {"precision": 1 / 3, "recall": 1 / 3, "f1": pytest.approx(1 / 3)}
    overlap = span_f1(a, b, mode="overlap")  # (10,20)~(12,20) now counts; (30,35) label differs
    assert overlap["f1"] == pytest.approx(2 / 3)
    assert span_f1(a, b, mode="overlap", labels=False)["f1"] == 1.0
    assert span_f1(a, b, mode="exact", labels=False)["f1"] == pytest.approx(2 / 3)


def test_span_f1_precision_and_recall_take_a_as_reference():
    a = [Span(0, 10, NS)]
    b = [Span(0, 3, NS), Span(5, 8, NS), Span(20, 25, NS)]
    res = span_f1(a, b, mode="overlap")
    assert res["recall"] == 1.0 and res["precision"] == pytest.approx(2 / 3)
    swapped = span_f1(b, a, mode="overlap")
    assert swapped["recall"] == res["precision"] and swapped["f1"] == pytest.approx(res["f1"])


def test_span_f1_edge_cases():
    assert span_f1([], [])["f1"] is None
    assert span_f1([Span(0, 2, NS)], []) == {"precision": None, "recall": 0.0, "f1": 0.0}
    assert span_f1([Span(0, 2, NS)], [Span(2, 4, NS)], mode="overlap")["f1"] == 0.0  # touching != overlap
    with pytest.raises(ValueError):
        span_f1([], [], mode="fuzzy")  # type: ignore[arg-type]


# --- token categories ---------------------------------------------------------------------

# "東京 is 😀 big." in code points: 東0 京1 ␠2 i3 s4 ␠5 😀6 ␠7 b8 i9 g10 .11
EMOJI_TEXT = "東京 is 😀 big."
EMOJI_OFFSETS = [(0, 1), (1, 2), (2, 5), (5, 7), (7, 11), (11, 12), (12, 12)]  # last: zero-width EOS


def test_token_categories_on_emoji_and_cjk_offsets():
    assert len(EMOJI_TEXT) == 12 and EMOJI_TEXT[6] == "😀"
    spans = [Span(0, 2, NS), Span(6, 7, "unverifiable"), Span(8, 11, SUP)]
    codes = token_categories(EMOJI_OFFSETS, spans)
    want = ["hallucinated", "hallucinated", "none", "unverifiable", "supported", "none"]
    assert [CATEGORIES[int(c)] for c in codes[:6]] == want
    assert math.isnan(codes[6])  # zero-width token: never rated
    assert list(token_categories(EMOJI_OFFSETS, spans, binary=True)[:6]) == [1, 1, 0, 1, 0, 0]


def test_token_categories_na_missing_and_severity():
    offsets = [(0, 3), (3, 6), (6, 9)]
    spans = [Span(0, 3, "N/A"), Span(3, 9, SUP), Span(5, 7, NS), Span(6, 9, "N/A")]
    codes = token_categories(offsets, spans)
    assert math.isnan(codes[0])  # only N/A
    assert CATEGORIES[int(codes[1])] == "hallucinated"  # NS beats Supported on one token
    assert CATEGORIES[int(codes[2])] == "hallucinated"  # a scored span beats N/A
    assert np.isnan(token_categories(offsets, None)).all()  # did not annotate


def test_token_matrix_with_a_real_tokenizer_on_emoji_and_cjk(tiny_tokenizer):
    from core.text.tokens import completion_offsets

    text = "東京は日本の首都です。Emoji: 😀 🎉 done!"
    _, offsets = completion_offsets(tiny_tokenizer, text)
    emoji = text.index("🎉")
    spans = {"ann": [Span(emoji, emoji + 1, NS)], "bob": [Span(0, 2, SUP)], "cat": None}
    matrix, cats = token_matrix([(offsets, spans)], ["ann", "bob", "cat"])
    assert cats == list(CATEGORIES) and matrix.shape == (len(offsets), 3)
    hit = [i for i, (s, e) in enumerate(offsets) if s < emoji + 1 and emoji < e]
    assert hit and all(CATEGORIES[int(matrix[i, 0])] == "hallucinated" for i in hit)
    assert int(np.sum(matrix[:, 0] == CATEGORIES.index("hallucinated"))) == len(hit)
    assert np.isnan(matrix[:, 2]).all()
    _, bcats = token_matrix([(offsets, spans)], ["ann"], binary=True)
    assert bcats == list(BINARY_CATEGORIES)


def test_token_matrix_stacks_items():
    items = [([(0, 1), (1, 2)], {"a": [], "b": [Span(0, 1, NS)]}), ([(0, 4)], {"a": [Span(0, 4, SUP)]})]
    matrix, _ = token_matrix(items, ["a", "b"])
    np.testing.assert_array_equal(matrix, np.array([[0, 3], [0, 0], [1, NAN]]))
    assert token_matrix([], ["a"])[0].shape == (0, 1)


# --- the report ---------------------------------------------------------------------------


def _report_items():
    offsets = [(0, 5), (5, 10), (10, 15), (15, 20)]
    return [
        # 0: all three agree
        (offsets, {"ann": [Span(0, 5, NS)], "bob": [Span(0, 5, NS)], "cat": [Span(0, 5, NS)]}),
        # 1: bob disagrees on the label; cat did not annotate
        (offsets, {"ann": [Span(5, 10, NS)], "bob": [Span(5, 10, SUP)], "cat": None}),
        # 2: only ann annotated
        (offsets, {"ann": [Span(10, 20, II)]}),
        # 3: ann and cat overlap but differ in extent
        (offsets, {"ann": [Span(0, 10, SUP)], "bob": [], "cat": [Span(5, 10, SUP)]}),
    ]


def test_agreement_report_shape_and_values():
    report = agreement_report(_report_items(), ["ann", "bob", "cat"])
    json.dumps(report, allow_nan=False)  # JSON-serialisable, no NaN
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert set(pairs) == {("ann", "bob"), ("ann", "cat"), ("bob", "cat")}
    ab = pairs[("ann", "bob")]
    assert ab["n_items"] == 3 and ab["n_tokens"] == 12
    assert ab["span_f1_exact"] == pytest.approx(2 * 1 / (3 + 2))  # 1 exact match; ann 3 spans, bob 2
    ac = pairs[("ann", "cat")]
    assert ac["n_items"] == 2 and ac["span_f1_exact"] == pytest.approx(1 / 2)
    assert ac["span_f1_overlap"] == 1.0
    assert report["disagreements"] == {
        pair_key("ann", "bob"): [1, 3],
        pair_key("ann", "cat"): [3],
        pair_key("bob", "cat"): [3],
    }
    overall = report["overall"]
    assert overall["n_items"] == 3 and overall["n_tokens"] == 12
    assert overall["fleiss_kappa"] is not None and -1 <= overall["fleiss_kappa"] <= 1
    assert set(report["per_label"]) == {NS, SUP, II}
    assert report["per_label"][II] == {"krippendorff_alpha": None, "gwet_ac1": 1.0, "n_positive": 0}
    assert report["per_label"][NS]["n_positive"] == 4  # item 0: 3 raters, item 1: ann


def test_agreement_report_pair_kappa_matches_cohen_on_the_shared_tokens():
    items = _report_items()
    report = agreement_report(items, ["ann", "bob"])
    matrix, _ = token_matrix([items[0], items[1], items[3]], ["ann", "bob"])
    assert report["pairs"][0]["cohen_kappa"] == pytest.approx(cohen_kappa(matrix[:, 0], matrix[:, 1]))


def test_agreement_report_with_one_annotator_is_all_none():
    report = agreement_report(_report_items(), ["ann"])
    assert report["pairs"] == [] and report["disagreements"] == {}
    assert report["overall"] == {
        "fleiss_kappa": None,
        "krippendorff_alpha": None,
        "gwet_ac1": None,
        "n_tokens": 0,
        "n_items": 0,
    }
    json.dumps(report, allow_nan=False)


def test_agreement_report_perfect_agreement_on_one_category():
    offsets = [(0, 3), (3, 6)]
    items = [(offsets, {"a": [], "b": []})] * 3
    report = agreement_report(items, ["a", "b"])
    pair = report["pairs"][0]
    assert pair["cohen_kappa"] is None and pair["span_f1_exact"] is None
    assert report["overall"]["gwet_ac1"] == 1.0  # q = 4 categories: defined
    assert report["disagreements"] == {pair_key("a", "b"): []}

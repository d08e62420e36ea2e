"""Fixed heatmap inputs shared by the e2e test app, the browser tests and the benchmark.

Plain data only (no streamlit import), so tests can compare what the browser shows
with what was sent.
"""

from __future__ import annotations

import random

from core.components.heatmap import TokenView


def basic_case() -> tuple[TokenView, list[dict]]:
    texts = [
        "The",
        " city",
        " of",
        " L",
        "viv",
        " (",
        "German",
        ":",
        " Lem",
        "berg",
        ")",
        " was",
        " founded",
        " in",
        " ",
        "125",
        "6",
        " by",
        " King",
        " Daniel",
        " of",
        " Gal",
        "icia",
        ".",
        "\n\n",
        "It",
        " is",
        " twinned",
        " with",
        " Kra",
        "ków",
        " and",
        " 東京",
        " ",
        "\U0001f389",
        "",
        "",
        " —",
        " pop",
        ".",
        "\t",
        "7",
        "2",
        "0",
        ",",
        "0",
        "0",
        "0",
        ".",
    ]
    scores = [
        0.02,
        0.05,
        0.03,
        0.10,
        0.08,
        0.04,
        0.30,
        0.05,
        0.62,
        0.71,
        0.06,
        0.04,
        0.12,
        0.08,
        0.05,
        0.93,
        0.97,
        0.10,
        0.35,
        0.55,
        0.06,
        0.20,
        0.18,
        0.02,
        0.01,
        0.03,
        0.04,
        0.48,
        0.09,
        0.15,
        0.22,
        0.03,
        0.81,
        0.05,
        0.40,
        None,
        None,
        0.05,
        0.25,
        0.02,
        0.01,
        0.66,
        0.74,
        0.88,
        0.20,
        0.91,
        0.94,
        0.99,
        0.05,
    ]
    rng = random.Random(7)
    view = TokenView.from_lists(
        texts,
        ids=[1000 + 17 * i for i in range(len(texts))],
        scores=scores,
        logprobs=[round(-rng.uniform(0.01, 4.0), 3) for _ in texts],
        entropies=[round(rng.uniform(0.05, 3.5), 3) for _ in texts],
    )
    text = "".join(texts)
    gold = [
        {"start": text.index("Lemberg"), "end": text.index("Lemberg") + 7, "label": "Supported"},
        {"start": text.index("1256"), "end": text.index("1256") + 4, "label": "Not Supported"},
        {"start": text.index("King Daniel"), "end": text.index("King Daniel") + 11, "label": "Supported"},
        {"start": text.index("twinned"), "end": text.index("twinned") + 7, "label": "Insufficient Information"},
        {"start": text.index("東京"), "end": text.index("東京") + 2, "label": "Not Supported"},
        {"start": text.index("720,000"), "end": text.index("720,000") + 7, "label": "Not Supported"},
        {"start": text.index("pop"), "end": text.index("pop") + 3, "label": "N/A"},
    ]
    return view, gold


XSS_TOKENS = [
    "Safe",
    " ",
    "<img src=x onerror=alert(1)>",
    " ",
    "</script>",
    " ",
    "<b>bold</b>",
    " ",
    "<script>alert(2)</script>",
    " ",
    "&lt;i&gt;",
    " ",
    "<style>*{display:none}</style>",
    " ",
    '"><svg onload=alert(3)>',
    " end",
]


def sized_case(n: int, seed: int = 0) -> TokenView:
    rng = random.Random(seed)
    words = [
        "the",
        "model",
        "said",
        "that",
        "Paris",
        "was",
        "founded",
        "in",
        "1832",
        "by",
        "a",
        "Roman",
        "general",
        "named",
        "Lucius",
        "and",
        "its",
        "river",
        "is",
        "Seine",
    ]
    texts, scores, level = [], [], 0.2
    for i in range(n):
        if i and i % 40 == 0:
            texts.append(".\n")
        else:
            texts.append(" " + rng.choice(words) if i else rng.choice(words).capitalize())
        level = min(1.0, max(0.0, level + rng.uniform(-0.18, 0.18)))
        scores.append(round(level, 4))
    return TokenView.from_lists(
        texts,
        ids=[rng.randrange(50000) for _ in range(n)],
        scores=scores,
        logprobs=[round(-rng.uniform(0, 5), 3) for _ in range(n)],
        entropies=[round(rng.uniform(0, 4), 3) for _ in range(n)],
    )


# --- edit mode (the span editor) -----------------------------------------------------------

# Astral characters (2 UTF-16 units, 1 code point) and CJK come before the spans the tests
# make, so a UTF-16 offset taken for a code point would be off by several characters.
EDIT_TEXTS = [
    "Der",
    " Berg",
    " 富士山",
    " (",
    "🗻",
    ")",
    " ist",
    " 3776",
    " m",
    " hoch",
    " und",
    " liegt",
    " in",
    " 𠮷野",
    ".",
    " Er",
    " wurde",
    " 1707",
    " zuletzt",
    " aktiv",
    " —",
    " sagt",
    " 👩\u200d🔬",
    " Dr",
    ".",
    " Sato",
    ".",
    "\n",
    "Die",
    " Besteigung",
    " dauert",
    " etwa",
    " 8",
    " Stunden",
    ".",
]
EDIT_SCORES = [
    0.02,
    0.05,
    0.20,
    0.03,
    0.10,
    0.02,
    0.04,
    0.91,
    0.62,
    0.30,
    0.03,
    0.05,
    0.04,
    0.40,
    0.02,
    0.03,
    0.06,
    0.72,
    0.45,
    0.20,
    0.05,
    0.06,
    0.10,
    0.55,
    0.50,
    0.58,
    0.03,
    0.01,
    0.02,
    0.10,
    0.20,
    0.15,
    0.35,
    0.33,
    0.02,
]


JUDGE_NOTE = "<img src=x onerror=alert(1)> [passage 7] Mount Fuji: 3,776 m"


def edit_case() -> tuple[TokenView, list[dict]]:
    """A short answer with emoji / CJK / astral characters and four probe suggestions."""
    view = TokenView.from_lists(EDIT_TEXTS, ids=list(range(500, 500 + len(EDIT_TEXTS))), scores=EDIT_SCORES)
    text = "".join(EDIT_TEXTS)

    def at(word: str, score: float) -> dict:
        start = text.index(word)
        return {"start": start, "end": start + len(word), "score": score}

    suggestions = [at("3776 m", 0.91), at("1707", 0.72), at("Dr. Sato", 0.58), at("8 Stunden", 0.35)]
    return view, suggestions


def edit_sized_case(n: int, threshold: float = 0.8) -> tuple[TokenView, list[dict]]:
    """`sized_case(n)` with the probe's own suggestions (runs of scores >= threshold)."""
    from core.text.editing import suggest_spans

    view = sized_case(n)
    text = "".join(view.texts)
    offsets = list(zip(view.starts, view.ends))
    sugs = suggest_spans(offsets, [s if s is not None else float("nan") for s in view.scores], threshold, text)
    return view, [{"start": s.start, "end": s.end, "score": s.score} for s in sugs]


THEIR_SPANS_WORDS = [("Berg", "Supported"), ("3776", "Not Supported")]


def their_spans(view: TokenView) -> list[dict]:
    """What "someone else" saved in the conflict case (words that exist in edit_case)."""
    text = "".join(view.texts)
    out = []
    for word, label in THEIR_SPANS_WORDS:
        if word in text:
            out.append({"start": text.index(word), "end": text.index(word) + len(word), "label": label, "note": None})
    return out

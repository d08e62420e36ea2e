"""Fixed heatmap inputs shared by the e2e test app, the browser tests and the benchmark.

Plain data only (no streamlit import), so tests can compare what the browser shows
with what was sent.
"""
from __future__ import annotations

import random

from core.components.heatmap import TokenView


def basic_case() -> tuple[TokenView, list[dict]]:
    texts = [
        "The", " city", " of", " L", "viv", " (", "German", ":", " Lem", "berg", ")", " was",
        " founded", " in", " ", "125", "6", " by", " King", " Daniel", " of", " Gal", "icia",
        ".", "\n\n", "It", " is", " twinned", " with", " Kra", "ków", " and", " 東京", " ",
        "\U0001F389", "", "", " —", " pop", ".", "\t", "7", "2", "0", ",", "0", "0", "0", ".",
    ]
    scores = [
        0.02, 0.05, 0.03, 0.10, 0.08, 0.04, 0.30, 0.05, 0.62, 0.71, 0.06, 0.04,
        0.12, 0.08, 0.05, 0.93, 0.97, 0.10, 0.35, 0.55, 0.06, 0.20, 0.18,
        0.02, 0.01, 0.03, 0.04, 0.48, 0.09, 0.15, 0.22, 0.03, 0.81, 0.05,
        0.40, None, None, 0.05, 0.25, 0.02, 0.01, 0.66, 0.74, 0.88, 0.20, 0.91, 0.94, 0.99, 0.05,
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
    "Safe", " ", "<img src=x onerror=alert(1)>", " ", "</script>", " ", "<b>bold</b>", " ",
    "<script>alert(2)</script>", " ", "&lt;i&gt;", " ", "<style>*{display:none}</style>", " ",
    '"><svg onload=alert(3)>', " end",
]


def sized_case(n: int, seed: int = 0) -> TokenView:
    rng = random.Random(seed)
    words = ["the", "model", "said", "that", "Paris", "was", "founded", "in", "1832", "by",
             "a", "Roman", "general", "named", "Lucius", "and", "its", "river", "is", "Seine"]
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

"""Synthetic probe scores with known structure, for the metrics and diagnostics tests."""

from __future__ import annotations

import numpy as np

from core.probes.metrics import ItemScores


def synthetic_items(n_items: int, n_tokens: int = 40, seed: int = 0, signal: float = 1.5, round_to: int | None = None):
    """Generations with 3-token spans every 10 tokens (token 0 ignored); hallucinated tokens
    score higher on the probe, lower on log-prob and higher on entropy."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n_items):
        n_spans = max(1, n_tokens // 10)
        span_labels = rng.integers(0, 2, n_spans)
        span_ids = np.full(n_tokens, -1)
        labels = np.zeros(n_tokens, dtype=int)
        for k in range(n_spans):
            start = k * 10 + 2
            span_ids[start : start + 3] = k
            labels[start : start + 3] = span_labels[k]
        labels[0] = -1
        logits = rng.normal(size=n_tokens) + signal * (labels == 1) - 1.0
        probe = 1.0 / (1.0 + np.exp(-logits))
        if round_to is not None:
            probe = np.round(probe, round_to)
        logprobs = -rng.exponential(1.0, n_tokens) - 0.5 * (labels == 1)
        entropies = rng.exponential(1.0, n_tokens) + 0.3 * (labels == 1)
        items.append(ItemScores(labels, span_ids, span_labels, probe, logprobs, entropies))
    return items

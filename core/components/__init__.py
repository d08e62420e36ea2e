"""Custom browser components (Streamlit components v2, no iframe).

This package is the one place in `core/` that may import `streamlit` and the one place
where browser code (JS/CSS) lives. Importing the package does not import streamlit; the
component is registered the first time it is mounted.
"""

from core.components.heatmap import (
    GOLD_COLOURS,
    SCALE_STOPS,
    UNKNOWN_COLOR,
    TokenView,
    answer_text,
    edit_payload,
    heatmap_payload,
    saved_spans,
    token_gold_labels,
    token_heatmap,
)

__all__ = [
    "GOLD_COLOURS",
    "SCALE_STOPS",
    "UNKNOWN_COLOR",
    "TokenView",
    "answer_text",
    "edit_payload",
    "heatmap_payload",
    "saved_spans",
    "token_gold_labels",
    "token_heatmap",
]

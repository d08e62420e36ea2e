"""The Generate page's pieces: the session's earlier answers kept on the page, and what can be
done with a finished answer (open it in Annotate, or discard it so it is never queued)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.base.errors import UserError
from core.base.types import TokenTrace
from core.components.heatmap import TokenView, token_heatmap
from core.orchestration.actions import generate as acts
from core.text.markdown import md_escape

HISTORY_KEY = "gen-history"
KEPT = 20  # earlier answers kept on the page per session


@dataclass
class Kept:
    """One finished answer of this session."""

    live_id: str
    question: str
    text: str
    trace: TokenTrace
    answer_id: int | None  # the stored answer, None when not stored (or discarded)
    discarded: bool = False


def _history() -> list[Kept]:
    return st.session_state.setdefault(HISTORY_KEY, [])


def keep_in_history(live: Any, snap: Any) -> None:
    """Remember a finished answer once (by its live generation's id), newest first."""
    history = _history()
    if any(k.live_id == live.id for k in history):
        return
    stored = snap.result if isinstance(snap.result, int) else None
    history.insert(0, Kept(live.id, live.messages[-1]["content"], snap.text, snap.trace, stored))
    del history[KEPT:]


def answer_links(answer_id: int, storage: Any, user: Any) -> None:
    """Open the stored answer in Annotate, or discard it: deleted, so it reaches no queue."""
    kept = next((k for k in _history() if k.answer_id == answer_id), None)
    if kept is not None and kept.discarded:
        st.caption(f"Answer #{answer_id} was discarded: it is in no queue.")
        return
    open_col, discard_col = st.columns(2)
    with open_col:
        st.page_link(
            "pages/annotate.py",
            label=f"Open answer #{answer_id} in Annotate",
            icon=":material/label:",
            query_params={"generation": str(answer_id)},
        )
    if discard_col.button(
        "Discard this answer", key=f"gen-discard-{answer_id}", help="delete it: it is never queued for annotation"
    ):
        try:
            acts.discard_answer(storage, user, answer_id)
        except UserError as exc:
            st.error(md_escape(str(exc)))
            return
        if kept is not None:
            kept.discarded = True
        st.toast(f"Answer #{answer_id} discarded.")
        st.rerun()


def earlier_answers(live: Any) -> None:
    """This session's earlier answers (the current one is drawn below), each folded away."""
    earlier = [k for k in _history() if live is None or k.live_id != live.id]
    if not earlier:
        return
    st.caption(f"Earlier answers of this session ({len(earlier)}, newest first)")
    for n, kept in enumerate(earlier):
        state = " · discarded" if kept.discarded else (f" · #{kept.answer_id}" if kept.answer_id else "")
        with st.expander(md_escape(f"{kept.question[:80]}{state}")):  # labels render markdown
            token_heatmap(TokenView.from_trace(kept.trace), key=f"gen-earlier-{kept.live_id}-{n}", height=200)

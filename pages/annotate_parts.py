"""Annotate's panels beside the editor: guidelines, skip, comments and flags (issue #14, item 9).

Kept out of pages/annotate.py so that page stays a thin flow. Every action (core/orchestration/
actions/annotate.py) re-reads the acting account inside its own transaction, and every user-written string is shown through
`md_escape` — except the guidelines, which an admin writes as markdown and which render as
markdown with raw HTML off (st.markdown never gets `unsafe_allow_html`).
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.base.errors import UserError
from core.orchestration.actions import annotate as acts
from core.text.markdown import app_images_only, md_escape
from core.text.readable import label_word, plural
from pages.common import SignedIn, database

FLASH = "ann-flash"


def _when(moment) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "?"


# --- guidelines -------------------------------------------------------------------------


def guidelines_panel(user: SignedIn) -> None:
    """The newest guidelines (markdown, no raw HTML) for everyone; a versioned editor for admins."""
    found = acts.current_guidelines(database())
    title = "Guidelines" + (f" (v{found.version})" if found else "")
    with st.expander(title, expanded=False):
        if found is None:
            st.caption(
                "No guidelines yet."
                + (" Write the first version below." if user.role == "admin" else " An admin writes them.")
            )
        else:
            st.caption(
                f"Version {found.version}, by {md_escape(found.author or 'a removed user')}, {_when(found.created_at)}"
            )
            with st.container(height=420, border=False):  # long guidelines scroll beside the editor
                # the admin's markdown; raw HTML never renders (no unsafe_allow_html), and images
                # load only from the app itself (a remote one would track every reader)
                st.markdown(app_images_only(found.body))
    if user.role != "admin":
        return
    shown = found.version if found else 0
    with st.expander("Edit the guidelines (admin)", expanded=False):
        with st.form("ann-guidelines-form"):
            text = st.text_area(
                "Guidelines (markdown; raw HTML is shown as text)",
                found.body if found else "",
                height=240,
                max_chars=acts.MAX_GUIDELINE_CHARS,
                key=f"ann-guidelines-{shown}",
            )
            if st.form_submit_button("Save as a new version"):
                try:
                    saved = acts.save_guidelines(database(), user, text, shown)
                    st.session_state[FLASH] = ("saved", f"Guidelines saved as version {saved}.")
                    st.rerun()
                except UserError as exc:
                    st.error(md_escape(str(exc)))


# --- skip -------------------------------------------------------------------------------


def skip_answer(user: SignedIn, generation_id: int, move_on: Callable[[], None]) -> None:
    """The Skip button's callback: store the skip, then open the next answer of the queue."""
    try:
        acts.skip(database(), user, generation_id)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("saved", f"Skipped answer #{generation_id}: it has left your queue.")
    move_on()


def unskip_answer(user: SignedIn, generation_id: int) -> None:
    try:
        acts.unskip(database(), user, generation_id)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("saved", f"Answer #{generation_id} is back in your queue.")


def skip_controls(user: SignedIn, generation_id: int, move_on: Callable[[], None]) -> None:
    """Skip (key S, as in Label Studio / Prodigy), or, on an answer I skipped, put it back."""
    when = acts.skipped_at(database(), user, generation_id)
    if when is None:
        st.button(
            "Skip",
            key=f"ann-skip-{generation_id}",
            shortcut="S",
            on_click=skip_answer,
            args=(user, generation_id, move_on),
            help="Pass on this answer (key S): it leaves your queue and is not assigned to you again.",
        )
    else:
        st.caption(f"You skipped this answer on {_when(when)}.")
        st.button(
            "Put it back in my queue",
            key=f"ann-unskip-{generation_id}",
            on_click=unskip_answer,
            args=(user, generation_id),
        )


# --- comments and flags ----------------------------------------------------------------------


def _add_comment(user: SignedIn, generation_id: int) -> None:
    body = st.session_state.get(f"ann-comment-text-{generation_id}", "")
    flag = bool(st.session_state.get(f"ann-comment-flag-{generation_id}", False))
    try:
        acts.add_comment(database(), user, generation_id, body, flag=flag)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[f"ann-comment-text-{generation_id}"] = ""
    st.session_state[f"ann-comment-flag-{generation_id}"] = False
    st.session_state[FLASH] = ("saved", "Flagged for review." if flag else "Comment added.")


def _resolve(user: SignedIn, generation_id: int) -> None:
    try:
        closed = acts.resolve_flags(database(), user, generation_id)
    except UserError as exc:
        st.session_state[FLASH] = ("error", str(exc))
        return
    st.session_state[FLASH] = ("saved", f"Resolved {closed} flag{'s' if closed != 1 else ''}.")


def comments_panel(user: SignedIn, generation_id: int) -> None:
    """The answer's comments (escaped), a box to add one or flag the answer for a reviewer."""
    found = acts.comments_for(database(), generation_id)
    flags = [c for c in found if c.open_flag]
    title = "Comments" + (f" ({len(found)})" if found else "") + (" · flagged for review" if flags else "")
    with st.expander(title, expanded=bool(flags)):
        for comment in found:
            state = (
                " · ⚑ flagged"
                if comment.open_flag
                else f" · flag resolved by {md_escape(comment.resolved_by or '?')}"
                if comment.flagged
                else ""
            )
            st.markdown(f"**{md_escape(comment.author or 'a removed user')}** · {_when(comment.created_at)}{state}")
            if comment.body:
                st.markdown(md_escape(comment.body, inline=False))
        st.text_area(
            "Comment",
            key=f"ann-comment-text-{generation_id}",
            max_chars=acts.MAX_COMMENT_CHARS,
            height=80,
            placeholder="What is unclear or wrong here?",
        )
        st.checkbox("Flag for review (reviewers see it on the Review page)", key=f"ann-comment-flag-{generation_id}")
        st.button(
            "Add comment", key=f"ann-comment-add-{generation_id}", on_click=_add_comment, args=(user, generation_id)
        )
        may_resolve = user.role in acts.REVIEW_ROLES or all(c.author == user.name for c in flags)
        if flags and may_resolve:
            st.button(
                "Resolve the flag",
                key=f"ann-comment-resolve-{generation_id}",
                on_click=_resolve,
                args=(user, generation_id),
            )


def flagged_for_review(dataset: str | None) -> None:
    """Review page: the answers annotators flagged, with their comments (read-only; newest first)."""
    import pandas as pd

    from core.text.spreadsheet import spreadsheet_safe

    flags = acts.open_flags(database(), dataset)
    if not flags:
        return
    with st.expander(f"Flagged for review: {len(flags)} open flag{'s' if len(flags) != 1 else ''}", expanded=True):
        table = pd.DataFrame(
            [
                {
                    "answer": f"#{c.generation_id}",
                    "dataset": c.dataset,
                    "flagged by": c.author or "",
                    "when": _when(c.created_at),
                    "comment": c.body,
                    "open": f"annotate?generation={c.generation_id}",
                    "settle": f"review?generation={c.generation_id}",
                }
                for c in flags
            ]
        )
        st.dataframe(
            spreadsheet_safe(table),
            hide_index=True,
            key="rev-flags",
            column_config={
                "comment": st.column_config.TextColumn(width="large"),
                "open": st.column_config.LinkColumn("open", display_text="in Annotate"),
                "settle": st.column_config.LinkColumn("settle", display_text="in Review"),
            },
        )


# --- the LLM judge's evidence -------------------------------------------------------------


def judge_evidence_panel(evidence: list[acts.JudgeEvidence]) -> None:
    """Each LLM judge suggestion with the passages it cites: title, passage id and address as
    escaped markdown or plain text, the passage itself and the note through st.text. All of it
    is model output or imported text: never HTML, never a link."""
    if not evidence:
        return
    cited = sum(1 for item in evidence if item.passages)
    with st.expander(
        f"The LLM judge's evidence: {plural(len(evidence), 'suggestion')}, {cited} citing passages", expanded=False
    ):
        for n, item in enumerate(evidence):
            if n:
                st.divider()
            st.markdown(
                f"**{md_escape(item.text)}** · {label_word(item.label)} · judge {md_escape(item.judge)} "
                f"· characters {item.start}–{item.end}"
            )
            if item.note:
                st.text(f"Note: {item.note}")
            if not item.passages:
                st.caption("No passage cited: the judge went by its own knowledge.")
            for passage in item.passages:
                st.markdown(
                    f"*{md_escape(passage.title)}* · passage {passage.id} · collection {md_escape(passage.collection)}"
                )
                if passage.url:
                    st.text(passage.url)
                st.text(passage.text)
            if item.missing:
                st.caption(f"{plural(item.missing, 'cited passage')} no longer in the references.")

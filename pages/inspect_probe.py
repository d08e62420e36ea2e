"""Inspect page (built in issue #6); the role check already guards it."""
import streamlit as st

from pages.common import require_page

require_page("inspect")
st.title("Inspect")
st.info("This page arrives with issue #6. Everything it will do is available from `python -m core` today.")

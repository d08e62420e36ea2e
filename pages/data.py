"""Data page (built in issue #7); the role check already guards it."""
import streamlit as st

from pages.common import require_page

require_page("data")
st.title("Data")
st.info("This page arrives with issue #7. Everything it will do is available from `python -m core` today.")

"""Review page (built in issue #5); the role check already guards it."""
import streamlit as st

from pages.common import require_page

require_page("review")
st.title("Review")
st.info("This page arrives with issue #5. Everything it will do is available from `python -m core` today.")

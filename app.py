"""ProbeLens web app entry point (placeholder until the web-app issue builds the shell)."""
import streamlit as st

st.set_page_config(page_title="ProbeLens", layout="wide")
st.title("ProbeLens")
st.write("The web app arrives with the app-shell issue; the command line `python -m core` works today.")

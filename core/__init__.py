"""ProbeLens core: model, probe, metrics and jobs. Never imports streamlit."""

"""ProbeLens core, in layers (arrows point down only; import-linter keeps them):

- ``orchestration``: runs (retrain, re-score, batch, seed, the worker), the probe registry,
  Inspect's evaluation sets and the CLI; may import ``db`` and everything below.
- ``components``: the heatmap/editor browser component (the one place Streamlit is imported).
- pure: ``analysis``, ``probes``, ``engine``, ``text``, ``base``; never ``db`` or Streamlit.
"""

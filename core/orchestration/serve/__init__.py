"""`python -m core serve`: an OpenAI-compatible chat API whose every token carries the probe's risk.

Modules: `schema` (requests in, OpenAI-shaped responses out), `streaming` (one answer on the
shared batched engine, bridged to asyncio), `keys` (API keys and the per-key in-flight limit),
`probe` (the version that scores, re-read while serving), `capture` (answers into a dataset),
`metrics` (Prometheus), `app` (the FastAPI routes, and `build_app` that both ways of serving
use) and `ray_serve` (`--ray`: the same app on Ray Serve replicas).
"""

"""`localspec serve`: an OpenAI-compatible HTTP API over one engine.

- `worker.py`: the engine's thread; requests run one at a time, in order.
- `schemas.py`: request bodies (pydantic) and their translation to options.
- `stats.py`: `timings` / `localspec` blocks of a response, and /metrics.
- `app.py`: the FastAPI routes, bearer key, OpenAI-style errors, SSE.
"""

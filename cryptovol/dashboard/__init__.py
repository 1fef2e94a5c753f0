"""The signal dashboard: one web page beside the service, read-only over the lake and registry.

Why a small FastAPI page and not Streamlit: the platform's other UIs (Dagster, MLflow, the
BentoML service) are each one process with a URL, and this is one more; FastAPI, uvicorn and
Plotly (whose JavaScript bundle ships inside the installed `plotly` package, so nothing is fetched
from the network) are already dependencies, whereas Streamlit would add a large dependency tree
and a websocket-driven rerun model. The page polls small JSON endpoints (`/api/*`) that other
tools can use too, starts in about a second, and the threshold slider works in the browser on a
precomputed table (no server round trip), which also makes it deterministic to test.

- `data`: every number the page shows, computed through `cryptovol.lake`, `cryptovol.alerts`,
  `cryptovol.drift.read_latest`, `cryptovol.models.registry` / `pyfunc` and the backtest's summary.
- `app`: the FastAPI app (routes, static files); `cryptovol dashboard --port N` serves it.
"""

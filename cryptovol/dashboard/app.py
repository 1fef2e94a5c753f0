"""The dashboard's HTTP app: the page, its JSON endpoints and the backtest charts.

`/healthz` answers as soon as the app serves (the readiness URL for launchers and tests).
The champion is reloaded from the registry at most every `CHAMPION_TTL_S`, so a promotion shows up
without restarting; the held-out evaluation is cached for as long (it scores many rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptovol.config import Settings
from cryptovol.dashboard import data

STATIC = Path(__file__).with_name("static")
CHAMPION_TTL_S = 30.0


def plotly_js() -> Path:
    """The Plotly bundle shipped inside the installed `plotly` package (no CDN, no network)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def create_app(settings: Settings | None = None) -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

    settings = settings or Settings.from_env()
    app = FastAPI(title="cryptovol signal dashboard", docs_url=None, redoc_url=None)
    cache = data.Cache(CHAMPION_TTL_S)

    def champion() -> Any:
        return cache.get("champion", lambda: data.load_champion(settings))

    def guarded(fn: Any) -> JSONResponse:
        try:
            return JSONResponse(fn())
        except Exception as exc:  # noqa: BLE001 - the page shows the error in the section
            data.log.exception("dashboard endpoint failed")
            return JSONResponse({"state": "error", "message": f"{type(exc).__name__}: {exc}"})

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return (STATIC / "index.html").read_text()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "data_dir": str(settings.data_dir)}

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/plotly.min.js")
    def plotly_bundle() -> FileResponse:
        return FileResponse(plotly_js(), media_type="application/javascript")

    @app.get("/static/dashboard.js")
    def script() -> FileResponse:
        return FileResponse(STATIC / "dashboard.js", media_type="application/javascript")

    @app.get("/api/champion")
    def champion_info() -> JSONResponse:
        return guarded(lambda: data.champion_info(champion()))

    @app.get("/api/signal")
    def signal(minutes: float = 30.0) -> JSONResponse:
        return guarded(lambda: data.signal(settings, minutes=min(max(minutes, 1.0), 24 * 60.0),
                                           champion=champion()))

    @app.get("/api/timeline")
    def timeline() -> JSONResponse:
        return guarded(lambda: data.timeline(settings))

    @app.get("/api/evaluation")
    def evaluation() -> JSONResponse:
        def compute() -> dict[str, Any]:
            model = champion()
            key = f"evaluation:{getattr(model, 'version', None)}"
            return cache.get(key, lambda: data.champion_evaluation(settings, model))
        return guarded(compute)

    @app.get("/api/drift")
    def drift() -> JSONResponse:
        return guarded(lambda: data.drift(settings))

    @app.get("/api/backtest")
    def backtest() -> JSONResponse:
        return guarded(lambda: data.backtest(settings))

    @app.get("/charts/{name}")
    def chart(name: str) -> FileResponse:
        from cryptovol.backtest.publish import backtest_dir

        path = backtest_dir(settings) / name
        if not (name.startswith("backtest_") and name.endswith(".png")) or "/" in name or not path.is_file():
            raise HTTPException(status_code=404, detail=f"no chart {name!r}")
        return FileResponse(path, media_type="image/png")

    return app


def serve(host: str = "127.0.0.1", port: int = 8050, settings: Settings | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")

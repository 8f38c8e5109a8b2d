"""The web dashboard: static pages served by the API process, with every asset bundled (no CDN)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["mount_dashboard"]


def mount_dashboard(app: FastAPI) -> None:
    static = resources.files(__package__).joinpath("static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return static.joinpath("index.html").read_text(encoding="utf-8")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")

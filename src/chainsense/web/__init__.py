"""The operator console: server-rendered pages (Jinja2) with small interactive islands (htmx,
uPlot, a little JavaScript), served by the API process. The assets are built from the npm lock
file by ``make web`` into ``static/dist`` and committed, so a Python-only install needs no Node;
no page loads anything from outside the machine."""

from __future__ import annotations

__all__ = ["mount_dashboard"]

from fastapi import FastAPI


def mount_dashboard(app: FastAPI) -> None:
    """Serve the console at ``/`` (sign-in at ``/login``) and its assets at ``/static``."""
    from importlib import resources

    from fastapi.staticfiles import StaticFiles

    from chainsense.web.pages import build_router

    static = resources.files(__package__).joinpath("static")
    app.include_router(build_router())
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

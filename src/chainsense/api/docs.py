"""``/docs`` (Swagger UI) and ``/redoc`` (Redoc), served from bundled assets: they work offline.

The bundles are copied from node_modules (locked by package-lock.json) into
``chainsense/web/static/vendor/`` by ``make web`` (``tools/vendor_api_docs.mjs``) and committed,
so a Python-only install needs no Node.js. They are served under :data:`ASSETS` on the API's own
origin; the pages reference nothing else (FastAPI's defaults load them from a CDN).
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_api_docs"]

ASSETS = "/api-docs-assets"


def install_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` and Redoc at ``/redoc`` (create the app with
    ``docs_url=None, redoc_url=None``)."""
    vendor = resources.files("chainsense.web").joinpath("static", "vendor")
    app.mount(ASSETS, StaticFiles(directory=str(vendor)), name="api-docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    favicon = f"{ASSETS}/swagger-ui/favicon-32x32.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=favicon,
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )

"""The ops page under ``/ops`` and the static files the app serves itself under ``/static``:
the page's own CSS and script, and the vendored uPlot, htmx and Swagger UI
(``scripts/vendor-assets``), so neither the page nor ``/docs`` loads anything from elsewhere."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from payouts.api.ops_page import routes
from payouts.api.ops_page.session import Forbidden, LoginRequired

STATIC = Path(__file__).parent / "static"
SWAGGER = "/static/vendor/swagger-ui"


async def _login_required(request: Request, _: Exception) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows this header with a full page load, not a swap into a section.
        return Response(status_code=401, headers={"HX-Redirect": "/ops/login"})
    if request.url.path.startswith("/ops/data/"):
        return JSONResponse({"error": "sign in at /ops/login"}, status_code=401)
    return RedirectResponse("/ops/login", status_code=303)


async def _forbidden(_: Request, exc: Exception) -> Response:
    return HTMLResponse(f"<p class='error'>{html.escape(str(exc))}</p>", status_code=403)


def docs(request: Request) -> HTMLResponse:
    """Swagger UI from the app's own static files (FastAPI's default loads it from a CDN,
    which leaves /docs blank on a machine without internet)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        # The validator badge would send the schema's address to an outside service.
        swagger_ui_parameters={"validatorUrl": None},
    )


def install(app: FastAPI) -> None:
    """Add the ops page, the static files and ``/docs`` (create the app with docs_url=None)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(routes.router)
    app.add_api_route("/docs", docs, include_in_schema=False, response_class=HTMLResponse)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)

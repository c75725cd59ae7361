"""The FastAPI application, built from a ``Runtime`` (``create_app``) or from the environment
(``payouts api``, uvicorn's factory)."""

from __future__ import annotations

import gc

from fastapi import Depends, FastAPI

from config.observability import configure_logging, init_sentry
from config.settings import get_settings
from payouts.api import errors, openapi, ops_page
from payouts.api.auth import KeyCache
from payouts.api.group_commit import EarningWriter
from payouts.api.routes import (
    claims,
    creators,
    earnings,
    events,
    health,
    holds,
    metrics,
    ops,
    webhooks,
)
from payouts.api.routes import payouts as payout_routes
from payouts.api.routes.common import known_query_only
from payouts.runtime import Runtime

DESCRIPTION = """\
Marketplaces send creator earnings here; payouts reports where each one went.

Amounts are canonical strings of integer base units. Every earning carries an idempotency key
(visible ASCII): retry with the same key as often as you like, it is recorded once. Every bound
the server enforces is in this document (patterns, lengths, the configured assets); errors
have one shape: `{"error": {"code", "message", "field"}}`.
"""


def create_app(runtime: Runtime | None = None) -> FastAPI:
    serving = runtime is None  # uvicorn's factory: this process is the server
    if runtime is None:
        settings = get_settings()
        configure_logging(settings)
        init_sentry(settings)
        runtime = Runtime(settings)
    app = FastAPI(
        title="payouts",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # served by ops_page from the app's own static files, not a CDN
        redoc_url=None,
        dependencies=[Depends(known_query_only)],
        # No OpenTelemetry here (metrics are Prometheus): without this FastAPI asks the global
        # providers on every request whether tracing is on, a few percent of a request's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.runtime = runtime
    app.state.key_cache = KeyCache()
    app.state.earning_writer = EarningWriter(runtime)
    app.state.metrics_registry = metrics.registry_for(runtime)
    # Only what the operator configured: the runtime adds the native asset for gas by itself.
    app.state.asset_ceilings = {a.symbol: a.max_earning for a in runtime.settings.assets}
    errors.install(app)
    for module in (health, earnings, creators, claims, holds, payout_routes, events, webhooks, ops):
        app.include_router(module.router)
    app.include_router(metrics.router)
    openapi.install(app, app.state.asset_ceilings)
    ops_page.install(app)
    if serving:
        # What is alive now (modules, the app, the runtime) lives as long as the process:
        # frozen, the collector no longer walks it on every full collection, which cost a
        # 10,000-earning batch more CPU than parsing it.
        gc.collect()
        gc.freeze()
    return app

"""``GET /metrics``: this process's metrics and the ledger's, in Prometheus' text format.

Open by default, as Prometheus targets usually are: it shows aggregates only (counts, values
and ages by state, asset, kind and rule; never a creator, a marketplace or an id) and the
scraper sits on the deployment's private network. Where the API is reachable from outside,
``PAYOUTS_METRICS_TOKEN`` requires ``Authorization: Bearer <token>`` (Prometheus sends it with
``authorization: {credentials: ...}`` in the scrape job). Left out of the OpenAPI document:
it is for the scraper, not for marketplaces.

The ledger's measures are the same whichever server process answers. This process's own
counters (the RPC calls it made) are served only when ``PROMETHEUS_MULTIPROC_DIR`` merges
every server process's: under ``payouts api --workers N`` each scrape reaches one process at
random, and counters that belong to one of them would seem to reset at every other scrape.
"""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from payouts.api.auth import bearer_key
from payouts.api.errors import ApiError
from payouts.api.routes.common import runtime
from payouts.ops.metrics import LedgerCollector
from payouts.runtime import Runtime

router = APIRouter(tags=["metrics"])


def registry_for(rt: Runtime) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(LedgerCollector(rt))
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    token = runtime(request).settings.metrics_token
    if token is not None and token.get_secret_value():
        key = bearer_key(request)
        if not hmac.compare_digest(key.encode(), token.get_secret_value().encode()):
            raise ApiError(403, "metrics_token_required", "/metrics needs the metrics token")
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

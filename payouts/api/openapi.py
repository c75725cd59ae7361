"""The published contract: request bodies we parse ourselves still appear in the OpenAPI
document, with their schemas under ``components``, and every route names its bearer scheme.

The document says what the server enforces, so a client that obeys it is never refused for
the shape of a value: the static patterns come with the schemas (``api.contract``); what
depends on the configuration or the date is filled in here when the document is built: the
configured assets, each one's largest earning, and the timestamps valid today (an earning's
occurred_at, a hold's expires_at). The document is rebuilt when the UTC date changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from payouts.api import contract
from payouts.api.schemas import METADATA_VALUE_REF, METADATA_VALUE_SCHEMA
from payouts.notify.endpoints import url_pattern

_REF = "#/components/schemas/{model}"
_bodies: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is ``model`` (parsed by ``api.body``)."""
    _bodies[model.__name__] = model
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def _earning_fields(
    schema: dict[str, Any], ceilings: Mapping[str, int], today: date
) -> dict[str, Any]:
    """An earning's schema with the configured assets, their ceilings and today's times."""
    properties = schema["properties"]
    symbols = sorted(ceilings)
    asset = {"type": "string", "description": properties["asset"]["description"]}
    properties["asset"] = {**asset, "enum": symbols} if symbols else {"not": {}}
    amount = {"type": "string", "description": properties["amount"]["description"]}
    limits = sorted(set(ceilings.values()))
    properties["amount"] = {
        **amount,
        "pattern": contract.positive_up_to(limits[-1] if limits else 1),
        "examples": [str(min([1250, *limits]))],
    }
    if len(limits) > 1:  # each asset its own ceiling: the amount's pattern follows the asset
        schema["allOf"] = [
            {
                "if": {"properties": {"asset": {"const": symbol}}, "required": ["asset"]},
                "then": {"properties": {"amount": {"pattern": contract.positive_up_to(ceiling)}}},
            }
            for symbol, ceiling in sorted(ceilings.items())
        ]
    occurred = properties["occurred_at"]
    properties["occurred_at"] = {
        "anyOf": [
            {"type": "string", "pattern": contract.occurred_at_pattern(today)},
            {"type": "null"},
        ],
        "description": occurred["description"],
        "examples": ["2020-01-31T12:00:00Z"],
    }
    properties["reference"] = {
        "anyOf": [
            {"type": "string", "maxLength": 255, "pattern": contract.TEXT_PATTERN},
            {"type": "null"},
        ]
    }
    properties["metadata"] = {
        "anyOf": [
            {
                "type": "object",
                "propertyNames": {"pattern": contract.TEXT_PATTERN},
                "additionalProperties": {"$ref": METADATA_VALUE_REF},
            },
            {"type": "null"},
        ],
        "description": properties["metadata"]["description"],
    }
    return schema


def _expires_at_field(schema: dict[str, Any], today: date) -> None:
    """A hold's expiry: the instants after now and within the horizon, valid all ``today``."""
    expires = schema["properties"]["expires_at"]
    example = (today + timedelta(days=30)).isoformat() + "T12:00:00Z"
    schema["properties"]["expires_at"] = {
        "anyOf": [
            {"type": "string", "pattern": contract.expires_at_pattern(today)},
            {"type": "null"},
        ],
        "description": expires["description"],
        "examples": [example],
    }


def _webhook_url_field(schema: dict[str, Any], pattern: str) -> None:
    """A webhook endpoint's URL: the pattern of what the operator's settings allow."""
    url = schema["properties"]["url"]
    for branch in [url, *url.get("anyOf", [])]:
        if branch.get("type") == "string":
            branch["pattern"] = pattern


# Parameters whose schema FastAPI cannot say: what they hold beyond type and length.
_PARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    ("query", "cursor"): {"type": "string", "maxLength": 64, "pattern": contract.cursor_pattern()},
    ("query", "creator_id"): {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": contract.TEXT_PATTERN,
    },
    ("path", "creator_id"): {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": contract.TEXT_PATTERN,
    },
}


def _parameters(schema: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                known = _PARAMETERS.get((parameter["in"], parameter["name"]))
                if known is not None:
                    parameter["schema"] = {**known, "description": parameter.get("description")}
                    if parameter["schema"]["description"] is None:
                        del parameter["schema"]["description"]


def build(app: FastAPI, ceilings: Mapping[str, int], today: date) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    requests: set[str] = set()  # the schemas of request bodies (responses are not parsed)
    for name, model in _bodies.items():
        body = model.model_json_schema(ref_template=_REF)
        defs = body.pop("$defs", {})
        schemas.update(defs)
        schemas[name] = body
        requests |= {name, *defs}
    for name in ("EarningIn", "BatchEarningIn"):
        if name in schemas:
            _earning_fields(schemas[name], ceilings, today)
    for name in sorted(requests):
        if "expires_at" in schemas[name].get("properties", {}):
            _expires_at_field(schemas[name], today)
    settings = app.state.runtime.settings
    url = url_pattern(
        allow_http=settings.webhook_allow_http,
        allow_private=settings.webhook_allow_private_addresses,
    )
    for name in ("EndpointIn", "EndpointUpdateIn"):
        if name in schemas:
            _webhook_url_field(schemas[name], url)
    schemas["MetadataValue"] = METADATA_VALUE_SCHEMA
    _parameters(schema)
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "API key"}
    }
    return schema


def install(
    app: FastAPI,
    ceilings: Mapping[str, int],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    built: dict[date, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        today = clock().astimezone(UTC).date()
        if today not in built:
            built.clear()
            built[today] = build(app, ceilings, today)
        app.openapi_schema = built[today]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

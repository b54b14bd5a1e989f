"""The JSON API's contract: one error shape, every status each operation answers, security.

Every 4xx and 5xx of ``/api/`` has the body :class:`ErrorOut`::

    {"detail": "machine: Pick the machine.", "reason": "bad_input",
     "errors": {"machine": "Pick the machine."}}

``detail`` is one sentence for a person, ``reason`` one word a program can branch on (the
error's classified reason), ``errors`` names each wrong field (422), else is empty.
Routes declare what they can answer with :func:`responses`; :func:`install` finishes the
document the app serves at ``/api/openapi.json``: the security schemes (API token, session
cookie, CSRF header), each operation's security, and what only the configuration knows
(the machine ids, categories, report kinds and silence lengths the app accepts), so a
client generated from it, and the property-based tests in ``tests/web``, see the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from core.config import RepsysConfig
from web import models

SESSION_COOKIE = "repsys_session"
API_DESCRIPTION = """Tickets, episodes, machines, silences and report requests of a plant.

Authenticate with an API token (`Authorization: Bearer rs_...`) or, from the app's own
pages, the session cookie plus `X-CSRF-Token` on writes. Every error answers one shape,
`ErrorOut`: `detail` for a person, `reason` for a program, `errors` per field (422).
Report requests are limited per user and kind per hour (429 with `Retry-After`); an
identical request made again soon returns the existing one (200 instead of 201)."""


#: The words ``ErrorOut.reason`` can be, an enum in the document so a client can switch
#: on them; ``http`` is any other HTTP error the framework raises.
ErrorReason = Literal[
    "bad_input",
    "bad_body",
    "not_authenticated",
    "forbidden",
    "csrf",
    "not_found",
    "method_not_allowed",
    "too_large",
    "rate_limited",
    "queue_unavailable",
    "internal",
    "http",
]
REASONS: frozenset[str] = frozenset(get_args(ErrorReason))


class ErrorOut(BaseModel):
    """The body of every error answer of the API."""

    detail: str = Field(description="What went wrong, in a sentence for a person.")
    reason: ErrorReason = Field(description="One word a program can act on.")
    errors: dict[str, str] = Field(
        default_factory=dict, description="Field (body key, path or query parameter) -> message."
    )


#: What each status means in this API, and an example body.
_STATUS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body could not be read as JSON text (UTF-8).",
        {"detail": "There was an error parsing the body", "reason": "bad_body", "errors": {}},
    ),
    401: (
        "No valid session, trusted-proxy identity or API token.",
        {"detail": "log in first", "reason": "not_authenticated", "errors": {}},
    ),
    403: (
        "The caller lacks the role, or a session write came without X-CSRF-Token.",
        {
            "detail": "This page needs the supervisor role.",
            "reason": "forbidden",
            "errors": {},
        },
    ),
    404: (
        "No such row.",
        {"detail": "There is no ticket 42.", "reason": "not_found", "errors": {}},
    ),
    413: (
        "The body is larger than web.max_body_bytes.",
        {"detail": "Request body larger than 1048576 bytes.", "reason": "too_large", "errors": {}},
    ),
    422: (
        "A body field, path or query parameter is wrong; `errors` names each.",
        {
            "detail": "machine: Pick the machine.",
            "reason": "bad_input",
            "errors": {"machine": "Pick the machine."},
        },
    ),
    429: (
        "Over the report quota (web.reports); Retry-After says when to ask again.",
        {
            "detail": "You asked for 6 tb reports in the last hour, the most one person may. "
            "Try again in 12 minutes.",
            "reason": "rate_limited",
            "errors": {},
        },
    ),
    500: (
        "An unexpected error; it is logged with its traceback.",
        {"detail": "An unexpected error; it is logged.", "reason": "internal", "errors": {}},
    ),
    503: (
        "The report queue (Redis) did not take the request; nothing was queued.",
        {
            "detail": "the report queue is unavailable: Connection refused",
            "reason": "queue_unavailable",
            "errors": {},
        },
    ),
}

#: Every operation can answer these: no login, a missing role, an unexpected error.
ALWAYS = (401, 403, 500)
#: An operation with path or query parameters adds 422.
WITH_PARAMS = (*ALWAYS, 422)
#: An operation with a JSON body adds an unreadable body, a too large one and bad fields.
WITH_BODY = (*ALWAYS, 400, 413, 422)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each status with :class:`ErrorOut` and an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in sorted(set(codes)):
        description, example = _STATUS[code]
        entry: dict[str, Any] = {
            "model": ErrorOut,
            "description": description,
            "content": {"application/json": {"example": example}},
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "Seconds until the quota allows another request.",
                    "schema": {"type": "integer", "minimum": 1},
                }
            }
        out[code] = entry
    return out


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token made by `repsys web token add` (rs_...); needs no CSRF.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The login session of the app's own pages.",
    },
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "With the session cookie, every write carries the page's CSRF token.",
    },
}
_READ_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
_WRITE_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"session": [], "csrf": []}]


def _schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["components"]["schemas"][name]["properties"]
    return found


def _configured(doc: dict[str, Any], cfg: RepsysConfig) -> None:
    """Write what only the configuration knows into the body schemas."""
    machines = [m.id for m in cfg.machines]
    ticket = _schema(doc, "TicketIn")
    ticket["machine"]["enum"] = machines
    ticket["category"]["enum"] = [c.id for c in cfg.web.categories]
    ticket["description"]["maxLength"] = cfg.web.description_max_chars
    silence = _schema(doc, "SilenceIn")
    silence["machine"]["enum"] = ["", *machines]
    silence["hours"]["minimum"] = cfg.web.silence_min_minutes / 60
    silence["hours"]["maximum"] = cfg.web.silence_max_hours
    _schema(doc, "ReportIn")["kind"]["enum"] = sorted(cfg.runner.pipelines)


def _examples(doc: dict[str, Any]) -> None:
    """Put the bodies' examples back whole.

    FastAPI writes the document without nulls, examples included, so an example ticket
    would lack its required ``last_error: null``; the models' own examples are the truth.
    """
    for name, schema in doc["components"]["schemas"].items():
        model = getattr(models, name, None)
        if isinstance(model, type) and issubclass(model, BaseModel) and "examples" in schema:
            schema["examples"] = model.model_json_schema()["examples"]


def install(app: FastAPI, cfg: RepsysConfig) -> None:
    """Make ``app`` serve the finished document (built once, on first request)."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=API_DESCRIPTION,
                routes=app.routes,
            )
            doc["components"]["securitySchemes"] = SECURITY_SCHEMES
            for operations in doc["paths"].values():
                for method, operation in operations.items():
                    read = method in ("get", "head")
                    operation["security"] = _READ_SECURITY if read else _WRITE_SECURITY
            _configured(doc, cfg)
            _examples(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    openapi: Callable[[], dict[str, Any]] = document
    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it

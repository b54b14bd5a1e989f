"""The JSON API against its own OpenAPI document, by schemathesis, for every role.

For each role (anonymous, each login role by session cookie + CSRF header, and an API
token) every operation of ``/api/openapi.json`` is called with requests generated from the
document: valid ones (positive) and ones the document forbids (negative). A run fails on
any 5xx, any status the document does not declare for the operation, any body or header
that does not match the declared schema, any schema-invalid request the app accepts, and
(anonymous) any request answered without a login.

Not checked: ``positive_data_acceptance``. The document cannot say everything the app
checks (a silence names a machine or a rule; a description holds a visible character;
a TB's start is not after its end), so a schema-valid request may earn a 422; that 422 is
still checked against the document like every answer.

``REPSYS_API_EXAMPLES`` sets the examples per operation, mode and role: 10 in ``make
test`` (well under a minute), a few hundred in the soak profile (``make soak-api``).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.web.conftest import RunningWeb, csrf_of
from web import accounts

ROLES = ["anonymous", "operator", "controller", "supervisor", "admin", "bearer"]
USERS = {"operator": "olga", "controller": "dan", "supervisor": "sam", "admin": "ada"}
EXAMPLES = int(os.environ.get("REPSYS_API_EXAMPLES", "10"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
#: What each role walked, printed at the end of the run (tests/web/conftest.py).
WALKED: dict[str, str] = {}
#: The operations of the document, in its order.
OPERATIONS: list[str] = []


def _credentials(web: RunningWeb, role: str) -> dict[str, str]:
    """The headers a client of ``role`` sends: none, a session with CSRF, or a token."""
    if role == "anonymous":
        return {}
    if role == "bearer":
        with web.sessions.begin() as s:
            _, token = accounts.add_token(s, name="bot", roles=["supervisor", "controller"])
        return {"Authorization": f"Bearer {token}"}
    client = web.login(USERS[role])
    csrf = csrf_of(client.get("/account").text)
    return {"Cookie": f"repsys_session={client.cookies['repsys_session']}", "X-CSRF-Token": csrf}


def _seed(web: RunningWeb) -> None:
    """A ticket and a silence with id 1, the documents' example id, so reads find rows."""
    with web.sessions.begin() as s:
        _, token = accounts.add_token(s, name="seed", roles=["supervisor"])
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}) as c:
        ticket = {"machine": "cnc103", "category": "tool", "description": "chipped", "badge": "1"}
        assert c.post("/api/v1/tickets", json=ticket).status_code == 201
        silence = {"machine": "cnc103", "hours": 1, "reason": "probe swap"}
        assert c.post("/api/v1/silences", json=silence).status_code == 201


def _walk(operation: Any, mode: GenerationMode, headers: dict[str, str], checks: list[Any]) -> int:
    """Run ``EXAMPLES`` generated cases of one operation; return how many ran."""
    ran = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        # make test walks the same cases every run (a failure reproduces); the soak
        # profile, which sets the count, walks new ones each time.
        derandomize="REPSYS_API_EXAMPLES" not in os.environ,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: Any) -> None:
        nonlocal ran
        ran += 1
        case.call_and_validate(headers=headers, checks=checks)

    run()
    return ran


@pytest.mark.parametrize("role", ROLES)
def test_every_operation_keeps_to_the_document(start_web, pg_engine, role: str) -> None:
    web = start_web(engine=pg_engine)
    _seed(web)
    headers = _credentials(web, role)
    # The document is for logged-in users; the anonymous run reads it as the bot does.
    schema = schemathesis.openapi.from_url(
        f"{web.url}/api/openapi.json", headers=headers or _credentials(web, "bearer")
    )
    # With credentials given, the generated (invalid) ones are replaced: only an anonymous
    # caller tests that every operation wants a login.
    checks = [*CHECKS, ignored_auth] if role == "anonymous" else CHECKS
    failures: dict[str, BaseException] = {}
    requests = 0
    operations = list(schema.get_all_operations())
    labels: list[str] = []
    for result in operations:
        # An operation schemathesis cannot read is a document that does not tell the truth.
        assert isinstance(result, Ok), result.err()
        operation = result.ok()
        labels.append(operation.label)
        for mode in MODES:
            try:
                requests += _walk(operation, mode, headers, checks)
            except Unsatisfiable:
                pass  # nothing of this operation can be made invalid (it takes no input)
            except BaseException as exc:  # schemathesis raises a BaseExceptionGroup
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures[f"{operation.label} {mode.value}"] = exc
    OPERATIONS[:] = labels
    WALKED[role] = (
        f"{len(operations)} operations, {requests} requests, {len(failures)} failures "
        f"({EXAMPLES} examples per operation and mode)"
    )
    report = "\n\n".join(f"== {label}\n{str(exc)[:2000]}" for label, exc in failures.items())
    assert not failures, report

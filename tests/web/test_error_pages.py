"""Every 4xx and 5xx a person can meet is a page in the app's style; the API answers JSON.

What each bad request gets: an impossible id in a page's address (``/tickets/abc``) is a
404 page, an unknown address a 404 page, a wrong method a page, a report the runner refuses
a page with its words; under ``/api/`` the same requests answer the documented JSON shape.
"""

from __future__ import annotations

from typing import Any

import pytest

PAGE_CASES = [
    ("GET", "/tickets/abc", 404, "Not found"),
    ("GET", "/tickets/99999999999999999999999", 404, "Not found"),
    ("GET", "/episodes/-x", 404, "Not found"),
    ("GET", "/no/such/page", 404, "Not found"),
    ("PUT", "/report", 405, "Not found"),
    ("DELETE", "/boards/machines", 405, "Not found"),
]


def _is_page(resp: Any, title: str) -> None:
    assert resp.headers["content-type"].startswith("text/html"), resp.text[:200]
    assert f"<h1>{title}</h1>" in resp.text
    assert 'id="error-message"' in resp.text
    assert "/static/app.css" in resp.text  # the app's own style, not a framework's
    assert '"detail"' not in resp.text  # never FastAPI's raw JSON


@pytest.mark.parametrize(("method", "path", "status", "title"), PAGE_CASES)
def test_pages_answer_errors_as_pages(start_web, method, path, status, title) -> None:
    web = start_web()
    c = web.login("sam")
    resp = c.request(method, path)
    assert resp.status_code == status
    _is_page(resp, title)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/tickets/abc", 422),
        ("GET", "/api/v1/no/such", 404),
        ("DELETE", "/api/v1/tickets", 405),
    ],
)
def test_the_api_answers_errors_as_json(start_web, method, path, status) -> None:
    web = start_web()
    c = web.login("sam")
    resp = c.request(method, path)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    assert set(resp.json()) == {"detail", "reason", "errors"}

"""CSRF protection: every state-changing request carries the session's secret token.

The token lives in the signed session cookie and is put into every form as a hidden
``csrf_token`` field (and into a ``<meta>`` tag for the page's script, which sends it as
``X-CSRF-Token``). A cross-site page can make the browser send our cookie but cannot read
the token, so its forged post fails here with 403.

Only a request *authenticated* by a valid API token goes without: a browser never adds an
``Authorization`` header by itself. A bearer header does not exempt a request identified
some other way (the proxy's headers, the cookie), and an invalid token is a 401.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import HTTPConnection, Request

from web.auth import CSRF_KEY, resolve
from web.errors import CsrfError
from web.services import services

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_FIELD = "csrf_token"
HEADER = "x-csrf-token"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def csrf_token(conn: HTTPConnection) -> str:
    """The session's CSRF token, created on first use."""
    token = conn.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        conn.session[CSRF_KEY] = token
    return token


async def check_csrf(request: Request) -> None:
    """Dependency of every router: refuse an unsafe request without the right token."""
    if request.method in SAFE_METHODS:
        return
    principal = resolve(request)  # raises NotAuthenticated for an invalid bearer token
    if principal is not None and principal.method == "token":
        return
    sent = request.headers.get(HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(FORM_TYPES):
        value = (await request.form()).get(FORM_FIELD, "")
        sent = value if isinstance(value, str) else ""
    expected = request.session.get(CSRF_KEY)
    if not sent or not isinstance(expected, str) or not hmac.compare_digest(sent, expected):
        services(request).metrics.csrf_rejections.inc()
        raise CsrfError(
            "This form has expired or did not come from this site. Reload the page and try again."
        )

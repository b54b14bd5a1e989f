"""Who is asking, and may they: sessions, the trusted proxy, API tokens, role checks.

A request is identified, in this order, by:

1. the trusted proxy's headers, only when the proxy proves itself: the connection comes
   straight from a configured proxy address and carries the shared secret header
   (otherwise the headers are ignored); groups become roles through ``role_map`` only;
2. an ``Authorization: Bearer`` API token (other systems, e.g. a Teams bot);
3. the session cookie: a signed cookie carrying a random session id whose login lives in
   Redis (``keys.web_session``) for ``web.session_max_age_s``. Logging out deletes it, and
   a disabled user's sessions stop at their next request because the user row is read
   every time (roles changed by an admin apply at once too).

Handlers declare what they need with ``Depends(require("supervisor"))``; ``admin`` passes
every role check.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection, Request

from core import keys
from core.db.schema import User
from core.logs import get_logger
from web.accounts import Principal, authenticate_token, parse_roles, principal_of
from web.errors import Forbidden, NotAuthenticated
from web.services import Services, services

log = get_logger(__name__)
SESSION_ID = "sid"
CSRF_KEY = "csrf"


def _peer(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


def proxy_proven(svc: Services, conn: HTTPConnection) -> bool:
    """True when the request comes from the configured gateway and carries its secret."""
    cached: Any = getattr(conn.state, "proxy_proven", None)
    if cached is not None:
        return bool(cached)
    cfg = svc.cfg.web.trusted_proxy
    proven = False
    if cfg.secret is not None and svc.is_trusted_proxy(_peer(conn)):
        sent = conn.headers.get(cfg.secret_header, "")
        expected = cfg.secret.get_secret_value()
        proven = hmac.compare_digest(sent.encode(), expected.encode())
        if not proven:
            svc.metrics.logins.labels(method="proxy", result="bad_proxy_secret").inc()
            log.warning("proxy_secret_refused", peer=_peer(conn), path=conn.url.path)
    conn.state.proxy_proven = proven
    return proven


def client_address(conn: HTTPConnection) -> str:
    """The client's address: the peer's, or the proven gateway's view of it.

    Behind the gateway every connection comes from the gateway; the client's own address is
    the last entry of the gateway's ``X-Forwarded-For`` (the one it appended), believed
    only when the gateway has proven itself. Entries before it are whatever the client sent.
    """
    svc = services(conn)
    if proxy_proven(svc, conn):
        header = svc.cfg.web.trusted_proxy.client_address_header
        hops = [h.strip() for h in conn.headers.get(header, "").split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return _peer(conn)


def _proxy_principal(svc: Services, conn: HTTPConnection) -> Principal | None:
    cfg = svc.cfg.web.trusted_proxy
    if not proxy_proven(svc, conn):
        return None
    username = conn.headers.get(cfg.user_header, "").strip()
    if not username:
        return None
    groups = [g.strip() for g in conn.headers.get(cfg.roles_header, "").split(",") if g.strip()]
    roles = parse_roles(cfg.role_map[g] for g in groups if g in cfg.role_map)
    return Principal(username=username[:128], roles=roles, method="proxy")


def _token_principal(svc: Services, conn: HTTPConnection) -> Principal | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    with svc.sessions() as session:
        principal = authenticate_token(session, token.strip())
    if principal is None:
        svc.metrics.logins.labels(method="token", result="bad_credentials").inc()
        raise NotAuthenticated("invalid or revoked API token")
    return principal


def _session_principal(svc: Services, conn: HTTPConnection) -> Principal | None:
    sid = conn.session.get(SESSION_ID)
    if not isinstance(sid, str) or not sid:
        return None
    raw = svc.redis.get(keys.web_session(sid))
    if raw is None:
        return None
    login = json.loads(raw)
    with svc.sessions() as session:
        user = session.get(User, int(login["user_id"]))
        if user is None or not user.active:
            svc.redis.delete(keys.web_session(sid))
            return None
        return principal_of(user, str(login.get("method", "password")))


def resolve(conn: HTTPConnection) -> Principal | None:
    """The request's principal, or ``None`` for an anonymous request (cached per request)."""
    cached: Any = getattr(conn.state, "principal", False)
    if cached is not False:
        return cached  # type: ignore[no-any-return]  # stored by this function only
    svc = services(conn)
    principal = (
        _proxy_principal(svc, conn) or _token_principal(svc, conn) or _session_principal(svc, conn)
    )
    conn.state.principal = principal
    return principal


def current(request: Request) -> Principal:
    """Dependency: the logged-in principal; raises :class:`NotAuthenticated`."""
    principal = resolve(request)
    if principal is None:
        raise NotAuthenticated("log in first")
    return principal


def require(*roles: str) -> Callable[[Request], Principal]:
    """Dependency factory: the principal, who must hold one of ``roles``."""

    def dependency(request: Request) -> Principal:
        principal = current(request)
        if not principal.has_any(roles):
            wanted = " or ".join(roles)
            raise Forbidden(f"This page needs the {wanted} role.")
        return principal

    return dependency


def start_session(request: Request, principal: Principal) -> None:
    """Log ``principal`` in: a fresh session id (in Redis) and a fresh CSRF token."""
    svc = services(request)
    sid = secrets.token_urlsafe(32)
    svc.redis.set(
        keys.web_session(sid),
        json.dumps({"user_id": principal.user_id, "method": principal.method}),
        ex=svc.cfg.web.session_max_age_s,
    )
    # A new id and token on every login, so a session id seen before login is worthless.
    request.session.clear()
    request.session[SESSION_ID] = sid
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    request.state.principal = principal


def end_session(request: Request) -> None:
    """Log out: forget the session in Redis and clear the cookie."""
    sid = request.session.get(SESSION_ID)
    if isinstance(sid, str) and sid:
        services(request).redis.delete(keys.web_session(sid))
    request.session.clear()
    request.state.principal = None

"""Local accounts and API tokens: create them, change them, check a login against them.

Passwords and badge PINs are hashed with Argon2id (argon2-cffi's defaults, the RFC 9106
low-memory profile): slow on purpose, so a stolen table is expensive to crack. API tokens
are 256 random bits, far beyond guessing, so a SHA-256 digest is enough to store them and
cheap enough to check on every API call. Neither a password nor a token is ever stored or
logged in clear.

Used by the login views, the API token check and ``repsys web user|token ...``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config.web import BADGE_PATTERN, USERNAME_PATTERN, WEB_ROLES, BootstrapUser
from core.db.schema import ApiToken, User, utcnow
from core.logs import get_logger
from web.errors import FormError

log = get_logger(__name__)

MIN_PASSWORD_LEN = 10
PIN_PATTERN = r"^[0-9]{4,8}$"
TOKEN_PREFIX = "rs_"  # noqa: S105 - the public prefix of tokens, not a secret


@dataclass(frozen=True)
class Principal:
    """Who is asking: a local user, a proxy-vouched user, or another system's token.

    ``method`` is how they proved it: password, badge, proxy or token.
    """

    username: str
    roles: frozenset[str]
    method: str
    display_name: str = ""
    badge: str | None = None
    user_id: int | None = None

    def has_any(self, roles: Iterable[str]) -> bool:
        """True when the principal holds one of ``roles``; ``admin`` holds them all."""
        return "admin" in self.roles or not self.roles.isdisjoint(roles)

    @property
    def shown_name(self) -> str:
        return self.display_name or self.username


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so an unknown name takes as long as
    # a wrong password and the answer time does not reveal which names exist.
    return _hasher().hash(secrets.token_hex(16))


def hash_secret(secret: str) -> str:
    """An Argon2id hash of a password or PIN."""
    return _hasher().hash(secret)


def verify_secret(stored: str | None, secret: str) -> bool:
    """True when ``secret`` matches ``stored``; a missing hash never matches."""
    try:
        return _hasher().verify(stored or _dummy_hash(), secret) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """What is stored for an API token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_roles(text: str | Iterable[str]) -> frozenset[str]:
    """``"operator, supervisor"`` → the set of known roles in it (unknown ones dropped)."""
    items = text.split(",") if isinstance(text, str) else text
    return frozenset(r.strip() for r in items if r.strip() in WEB_ROLES)


def check_roles(roles: Iterable[str]) -> list[str]:
    """The roles as a sorted list; raises :class:`FormError` naming an unknown one."""
    wanted = sorted({r.strip() for r in roles if r.strip()})
    unknown = [r for r in wanted if r not in WEB_ROLES]
    if unknown:
        raise FormError({"roles": f"unknown role {unknown[0]!r}; roles are {', '.join(WEB_ROLES)}"})
    if not wanted:
        raise FormError({"roles": "give at least one role"})
    return wanted


#: What a badge and PIN log in as, whatever else the user may do: a 4-digit PIN is for the
#: operator's form on a shared tablet; higher roles need a password or the gateway.
BADGE_ROLES = frozenset({"operator"})


def principal_of(user: User, method: str) -> Principal:
    roles = parse_roles(user.roles)
    if method == "badge":
        roles = BADGE_ROLES if roles else frozenset()
    return Principal(
        username=user.username,
        roles=roles,
        method=method,
        display_name=user.display_name,
        badge=user.badge,
        user_id=user.id,
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LEN:
        raise FormError({"password": f"a password has at least {MIN_PASSWORD_LEN} characters"})


def _check_pin(pin: str) -> None:
    if not re.fullmatch(PIN_PATTERN, pin):
        raise FormError({"pin": "a PIN is 4 to 8 digits"})


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def add_user(
    session: Session,
    *,
    username: str,
    roles: Iterable[str],
    password: str | None = None,
    badge: str | None = None,
    pin: str | None = None,
    display_name: str = "",
) -> User:
    """Add an account; flushes, no commit. Raises :class:`FormError` with what is wrong."""
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise FormError({"username": "a user name is letters, digits and . _ @ -"})
    role_list = check_roles(roles)
    if password is None and badge is None:
        raise FormError({"password": "give a password, or a badge and PIN"})
    if password is not None:
        _check_password(password)
    if badge is not None:
        if not re.fullmatch(BADGE_PATTERN, badge):
            raise FormError({"badge": "a badge is letters, digits and dashes, at most 32"})
        if pin is None:
            raise FormError({"pin": "a badge needs a PIN"})
        _check_pin(pin)
        if session.scalar(select(User).where(User.badge == badge)) is not None:
            raise FormError({"badge": f"badge {badge} belongs to another user"})
    if find_user(session, username) is not None:
        raise FormError({"username": f"user {username} exists already"})
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_secret(password) if password is not None else None,
        badge=badge,
        pin_hash=hash_secret(pin) if pin is not None else None,
        roles=",".join(role_list),
        active=True,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, username: str, password: str) -> None:
    """Replace a user's password. Raises :class:`FormError` for an unknown user."""
    user = find_user(session, username)
    if user is None:
        raise FormError({"username": f"no user {username}"})
    _check_password(password)
    user.password_hash = hash_secret(password)


def set_active(session: Session, username: str, active: bool) -> None:
    """Enable or disable a user (a disabled user's sessions stop working at once)."""
    user = find_user(session, username)
    if user is None:
        raise FormError({"username": f"no user {username}"})
    user.active = active


def authenticate_password(session: Session, username: str, password: str) -> Principal | None:
    """The user's principal when the password matches an active account, else ``None``."""
    user = find_user(session, username)
    ok = verify_secret(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        return None
    return principal_of(user, "password")


def authenticate_badge(session: Session, badge: str, pin: str) -> Principal | None:
    """The operator's principal when badge and PIN match an active account, else ``None``."""
    user = session.scalar(select(User).where(User.badge == badge))
    ok = verify_secret(user.pin_hash if user else None, pin)
    if user is None or not ok or not user.active:
        return None
    return principal_of(user, "badge")


def add_token(
    session: Session, *, name: str, roles: Iterable[str], created_by: str = ""
) -> tuple[ApiToken, str]:
    """Create an API token; returns the row and the token text (shown once, never stored)."""
    if not re.fullmatch(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", name):
        raise FormError({"name": "a token name is letters, digits and . _ -"})
    role_list = check_roles(roles)
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise FormError({"name": f"token {name} exists already"})
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name, token_hash=token_digest(token), roles=",".join(role_list), created_by=created_by
    )
    session.add(row)
    session.flush()
    return row, token


def revoke_token(session: Session, name: str) -> bool:
    """Revoke a token by name; False when there is no such live token."""
    row = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def authenticate_token(session: Session, token: str) -> Principal | None:
    """The token's principal when it exists and is not revoked, else ``None``."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return Principal(username=f"token:{row.name}", roles=parse_roles(row.roles), method="token")


def bootstrap(session: Session, users: list[BootstrapUser]) -> list[str]:
    """Create or update the configured start-up accounts; config wins. Returns their names.

    A user whose password and PIN secrets are both unset is skipped (the demo sets them
    from the environment; a plant usually has none).
    """
    done: list[str] = []
    for spec in users:
        password = spec.password.get_secret_value() if spec.password else None
        pin = spec.pin.get_secret_value() if spec.pin else None
        if password is None and pin is None:
            log.warning("bootstrap_user_skipped", username=spec.username, why="no secret set")
            continue
        user = find_user(session, spec.username)
        if user is None:
            add_user(
                session,
                username=spec.username,
                roles=spec.roles,
                password=password,
                badge=spec.badge if pin is not None else None,
                pin=pin,
                display_name=spec.display_name,
            )
        else:
            if password is not None:
                _check_password(password)
                user.password_hash = hash_secret(password)
            if pin is not None and spec.badge is not None:
                _check_pin(pin)
                user.badge = spec.badge
                user.pin_hash = hash_secret(pin)
            user.roles = ",".join(check_roles(spec.roles))
            user.display_name = spec.display_name
            user.active = True
        done.append(spec.username)
    session.flush()
    return done

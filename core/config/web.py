"""Configuration section ``web:``, validated by the model below (owned by ``web/``).

The web app serves the operator's ticket form, the supervisors' boards, silences and
report requests. Everything a plant may want different is here: where it listens, how
long a login lasts, which proxy may vouch for users, which ticket categories exist.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel

#: The roles the web app knows. ``admin`` passes every role check.
WEB_ROLES = ("operator", "supervisor", "controller", "admin")
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
BADGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}$"
CATEGORY_ID_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


def _check_roles(roles: list[str]) -> list[str]:
    unknown = [r for r in roles if r not in WEB_ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; roles are {', '.join(WEB_ROLES)}")
    return roles


class TrustedProxyConfig(StrictModel):
    """An authenticating gateway (Kong with OIDC) that tells us who the user is.

    The headers are believed only when the gateway proves itself: the connection comes
    straight from one of ``proxies`` **and** carries ``secret_header`` with the shared
    secret (compared in constant time). An address alone proves little in a pod network:
    any pod there could send ``X-Authenticated-Groups: admin``. Groups become roles only
    through ``role_map``.
    """

    enabled: bool = Field(default=False, description="Take users from the proxy's headers.")
    proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the gateway, e.g. 10.42.0.0/16.",
    )
    user_header: str = Field(
        default="X-Authenticated-User", min_length=1, description="Header with the user name."
    )
    roles_header: str = Field(
        default="X-Authenticated-Groups",
        min_length=1,
        description="Header with the user's groups, separated by commas.",
    )
    role_map: dict[str, str] = Field(
        default_factory=dict,
        description="Identity-provider group -> RepSys role; required when enabled (a group "
        "not in it gives no role).",
    )
    secret: OptionalSecret = Field(
        default=None,
        description="The shared secret the gateway adds in secret_header; required when "
        "enabled ({env: NAME} or {file: PATH}).",
    )
    secret_header: str = Field(
        default="X-RepSys-Proxy-Secret",
        min_length=1,
        description="Header the gateway adds with the shared secret (and strips from clients).",
    )
    client_address_header: str = Field(
        default="X-Forwarded-For",
        min_length=1,
        description="The gateway's header with the client's address; its last entry is the "
        "address the gateway saw (used for login limits once the gateway is proven).",
    )

    @field_validator("proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for item in proxies:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network") from None
        return proxies

    @field_validator("role_map")
    @classmethod
    def _mapped_roles(cls, role_map: dict[str, str]) -> dict[str, str]:
        _check_roles(list(role_map.values()))
        return role_map

    @model_validator(mode="after")
    def _enabled_needs_proxies(self) -> TrustedProxyConfig:
        if self.enabled and not self.proxies:
            raise ValueError("trusted_proxy.enabled needs at least one address in 'proxies'")
        if self.enabled and self.secret is None:
            raise ValueError(
                "trusted_proxy.enabled needs 'secret': the header the gateway adds to prove "
                "itself (an address alone does not)"
            )
        if self.enabled and not self.role_map:
            raise ValueError(
                "trusted_proxy.enabled needs 'role_map' (identity-provider group -> role), so "
                "no group name becomes a RepSys role by accident"
            )
        return self


class LoginLimitConfig(StrictModel):
    """Failed-login limits, counted in Redis so every replica shares them."""

    max_failures_per_user: int = Field(
        default=5, ge=1, description="Failed logins of one user name before it is locked."
    )
    max_failures_per_address: int = Field(
        default=30, ge=1, description="Failed logins from one client address before it is locked."
    )
    window_s: int = Field(
        default=900, ge=10, description="How long failures count (and a lock lasts), seconds."
    )


class ReportLimitConfig(StrictModel):
    """How many report requests one user may make, and when a repeat is the same request.

    A trial balance reads a whole fiscal window from Plex and the accounting database;
    a tool check may mail a shift. Neither should run hundreds of times an hour because a
    script or a double click asked for it.
    """

    per_hour: int = Field(
        default=20, ge=1, description="Requests one user may make of one kind per hour."
    )
    per_hour_by_kind: dict[str, int] = Field(
        default_factory=lambda: {"tb": 6},
        description="Report kind -> its own hourly limit per user (else per_hour).",
    )
    same_request_window_s: int = Field(
        default=600,
        ge=0,
        description="An identical request this soon after another (not failed or "
        "cancelled) returns that one; 0: only while it is pending.",
    )

    @field_validator("per_hour_by_kind")
    @classmethod
    def _positive(cls, limits: dict[str, int]) -> dict[str, int]:
        for kind, limit in limits.items():
            if limit < 1:
                raise ValueError(f"the hourly limit of {kind!r} must be at least 1")
        return limits

    def limit(self, kind: str) -> int:
        """The hourly limit per user for ``kind``."""
        return self.per_hour_by_kind.get(kind, self.per_hour)


class CategoryConfig(StrictModel):
    """A ticket category on the operator's form."""

    id: str = Field(pattern=CATEGORY_ID_PATTERN, description="Stored with the ticket.")
    label: str = Field(min_length=1, max_length=64, description="What the operator reads.")


DEFAULT_CATEGORIES = [
    CategoryConfig(id="tool", label="Tool"),
    CategoryConfig(id="pallet", label="Pallet"),
    CategoryConfig(id="quality", label="Quality / rejection risk"),
    CategoryConfig(id="maintenance", label="Maintenance"),
    CategoryConfig(id="safety", label="Safety"),
    CategoryConfig(id="other", label="Other"),
]


class SignalDisplay(StrictModel):
    """How the boards show one signal: its label, unit and rounding."""

    label: str = Field(default="", max_length=64, description="Shown before the value.")
    unit: str = Field(default="", max_length=16, description="Shown after it: s, %, rpm.")
    decimals: int | None = Field(
        default=None, ge=0, le=6, description="Round numbers to this many places; unset: as text."
    )


class BootstrapUser(StrictModel):
    """An account created (or updated) at start-up, e.g. the demo's accounts.

    Secrets come from the environment; an optional secret that is not set skips it.
    """

    username: str = Field(pattern=USERNAME_PATTERN, description="Login name.")
    display_name: str = Field(default="", max_length=128, description="Shown in the header.")
    roles: list[str] = Field(min_length=1, description="Any of operator, supervisor, ...")
    password: OptionalSecret = Field(default=None, description="{env: NAME} or {file: PATH}.")
    badge: str | None = Field(default=None, pattern=BADGE_PATTERN, description="Badge number.")
    pin: OptionalSecret = Field(default=None, description="Badge PIN, {env: NAME}.")

    @field_validator("roles")
    @classmethod
    def _roles(cls, roles: list[str]) -> list[str]:
        return _check_roles(roles)


class WebConfig(StrictModel):
    """Settings of the ``web`` package. Every key has a default and a description."""

    host: str = Field(default="127.0.0.1", description="Listen address; 0.0.0.0 in a container.")
    port: int = Field(default=8080, ge=0, le=65535, description="Listen port; 0 = any free.")
    root_path: str = Field(
        default="", description="URL prefix when a gateway serves the app under a path."
    )
    session_secret: OptionalSecret = Field(
        default=None,
        description="Signs session cookies; the same on every replica. Unset: random per start.",
    )
    session_max_age_s: int = Field(
        default=12 * 3600, ge=60, description="A login lasts this long (a shift and a margin)."
    )
    cookie_secure: bool = Field(
        default=True, description="Send cookies over HTTPS only; false only for plain-HTTP demos."
    )
    hsts: bool = Field(default=False, description="Send Strict-Transport-Security (HTTPS only).")
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    description_max_chars: int = Field(
        default=4000, ge=10, le=65_536, description="Longest ticket description accepted."
    )
    categories: list[CategoryConfig] = Field(
        default_factory=lambda: list(DEFAULT_CATEGORIES),
        min_length=1,
        description="Ticket categories on the operator's form.",
    )
    no_data_after_s: float = Field(
        default=120.0, gt=0, description="A machine not heard from this long shows 'no data'."
    )
    board_refresh_s: int = Field(
        default=15, ge=2, description="How often boards reload themselves, seconds."
    )
    signals: dict[str, SignalDisplay] = Field(
        default_factory=dict,
        description="Signal name -> label, unit and decimals on the boards (adds to the "
        "built-in table of web/live.py).",
    )
    kiosk_token: OptionalSecret = Field(
        default=None,
        description="Opens the read-only TV board (/board/tv?token=...) without a login; "
        "{env: NAME} or {file: PATH}. Unset: the TV board needs a login.",
    )
    tv_tiles_per_page: int = Field(
        default=12, ge=1, le=100, description="Machines per page of the TV board's rotation."
    )
    tv_page_s: int = Field(
        default=20, ge=5, le=600, description="Seconds each page of the TV board is shown."
    )
    board_limit: int = Field(default=100, ge=1, le=1000, description="Rows shown per board table.")
    silence_min_minutes: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Shortest maintenance window a supervisor may create, minutes.",
    )
    silence_max_hours: int = Field(
        default=24 * 14, ge=1, description="Longest maintenance window a supervisor may create."
    )
    reports: ReportLimitConfig = ReportLimitConfig()
    login: LoginLimitConfig = LoginLimitConfig()
    trusted_proxy: TrustedProxyConfig = TrustedProxyConfig()
    bootstrap_users: list[BootstrapUser] = Field(
        default_factory=list, description="Accounts created or updated at start-up."
    )

    @field_validator("root_path")
    @classmethod
    def _root_path(cls, value: str) -> str:
        if value and not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", value):
            raise ValueError("root_path is empty or like /repsys (no trailing slash)")
        return value

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, categories: list[CategoryConfig]) -> list[CategoryConfig]:
        seen: set[str] = set()
        for cat in categories:
            if cat.id in seen:
                raise ValueError(f"category id {cat.id!r} appears twice")
            seen.add(cat.id)
        return categories

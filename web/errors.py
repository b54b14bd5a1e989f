"""Errors of the web app, classified like every other package's.

The app turns them into responses in one place (``web/app.py``): a form error re-renders
the form with its messages (422), a missing login redirects to the login page (HTML) or
answers 401 (API), a missing role answers 403, a lock answers 429.

Tree::

    WebError (RepsysError)
    ├── FormError (RejectedError)       input a user can fix; ``errors`` maps field -> message
    ├── NotAuthenticated (RejectedError) no valid session, proxy header or API token
    ├── Forbidden (RejectedError)        logged in, but without the role the page needs
    ├── CsrfError (RejectedError)        a form post without the session's CSRF token
    ├── LoginLocked (RejectedError)      too many failed logins; ``retry_after_s`` says when
    ├── RateLimited (RejectedError)      over a request quota (reports); ``retry_after_s`` too
    └── NotFound (RejectedError)         no such ticket, episode, silence or report
"""

from __future__ import annotations

from core.errors import RejectedError, RepsysError


class WebError(RepsysError):
    """Root of the web app's errors."""

    reason = "web"


class FormError(WebError, RejectedError):
    """Input the user can fix. ``errors`` maps a form field to its message."""

    reason = "bad_input"

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class NotAuthenticated(WebError, RejectedError):  # noqa: N818 - named for the answer it becomes
    """No valid session, trusted-proxy identity or API token."""

    reason = "not_authenticated"


class Forbidden(WebError, RejectedError):  # noqa: N818 - named for the answer it becomes
    """Authenticated, but without any of the roles the page needs."""

    reason = "forbidden"


class CsrfError(WebError, RejectedError):
    """A state-changing request without the session's CSRF token."""

    reason = "csrf"


class LoginLocked(WebError, RejectedError):  # noqa: N818 - named for the answer it becomes
    """Too many failed logins for this user name or address."""

    reason = "locked"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(WebError, RejectedError):  # noqa: N818 - named for the answer it becomes
    """Over a quota, e.g. report requests per user and kind per hour; answers 429."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(WebError, RejectedError):  # noqa: N818 - named for the answer it becomes
    """The ticket, episode, silence or report asked for does not exist."""

    reason = "not_found"

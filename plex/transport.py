"""Where and how a Plex call may go: the environment guard, the HTTP session, zeep's set-up.

Why these rules:

* The client refuses to be built when the configured environment and the endpoint host
  disagree (:func:`core.config.plex.endpoint_problem`): a test configuration never talks
  to production, and only the ``simulator`` environment may use a loopback endpoint.
* Plex no longer serves its WSDL, so the one in ``plex/wsdl/`` is loaded from disk.
* zeep has no timeouts by default: connect and operation timeouts are explicit.
* The transport retries only a failed *connect*. A request that reached Plex is never
  resent here, because Plex may have committed it; the sender decides (it looks up).
* Responses are parsed with DTDs, entities, external references and huge trees refused
  (``zeep.Settings``): an answer that tries is :class:`PlexUnsafeResponseError`.
* HTTP statuses are classified before zeep parses (:class:`CheckedSession`).
"""

from __future__ import annotations

import email.utils
import threading
import time
from pathlib import Path
from typing import Any

import requests
import zeep
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from core.config.plex import PlexConfig, endpoint_problem
from core.errors import ConfigError
from plex.errors import PlexAuthError, PlexRateLimitedError, PlexUnavailableError
from plex.response import NAMESPACE

WSDL_PATH = Path(__file__).resolve().parent / "wsdl" / "DataSource.wsdl"
_BINDINGS = {"1.1": f"{{{NAMESPACE}}}ServiceSoap", "1.2": f"{{{NAMESPACE}}}ServiceSoap12"}


def check_environment(cfg: PlexConfig) -> None:
    """Raise :class:`ConfigError` when ``cfg.endpoint`` is not of ``cfg.environment``."""
    problem = endpoint_problem(cfg.environment, cfg.endpoint)
    if problem:
        raise ConfigError(problem, path="plex.endpoint")


def retry_after_seconds(value: str | None, *, default: float = 1.0) -> float:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - time.time())


class CheckedSession(requests.Session):
    """A session that turns HTTP statuses into classified errors before zeep parses.

    zeep's own ``TransportError`` carries no headers, and 429's ``Retry-After`` is one;
    zeep's transport posts through this session, so the check sits here. It also holds
    the two rules on where and how long a call may go:

    - **No redirects.** requests follows them itself (urllib3's ``Retry(redirect=0)`` does
      not stop it) and would re-post the SOAP body, Basic auth included, to wherever the
      ``Location`` points, past the environment guard. A 3xx is an error here.
    - **A total deadline** (``deadline_s``: connect, send and read together). The socket
      timeouts bound each read, not the call: a server that drips its answer could hold
      a call past the sender's claim, and then another sender may file the ticket again.
    """

    def __init__(self, deadline_s: float) -> None:
        super().__init__()
        self.deadline_s = deadline_s

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> Any:
        kwargs["allow_redirects"] = False
        response = self._post_within_deadline(url, data, json, kwargs)
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("Location", "-")
            raise PlexUnavailableError(
                f"Plex answered HTTP {status} to {location}: redirects are not followed "
                "(check plex.endpoint)",
                reason="http_redirect",
            )
        if status in (401, 403):
            raise PlexAuthError(f"Plex refused the credentials (HTTP {status})")
        if status == 429:
            seconds = retry_after_seconds(response.headers.get("Retry-After"))
            raise PlexRateLimitedError(
                f"Plex rate limit (HTTP 429, Retry-After {seconds:g} s)", retry_after_s=seconds
            )
        is_xml = "xml" in response.headers.get("Content-Type", "")
        if status >= 500 and not is_xml:
            # Not a SOAP fault: a proxy or the server broke, perhaps after committing.
            raise PlexUnavailableError(
                f"Plex answered HTTP {status}", reason="http_5xx", ambiguous=True
            )
        if 300 <= status < 500 and not is_xml:
            raise PlexUnavailableError(f"Plex answered HTTP {status}", reason="http_status")
        return response

    def _post_within_deadline(
        self, url: str | bytes, data: Any, json: Any, kwargs: dict[str, Any]
    ) -> requests.Response:
        """``Session.post`` in a thread of its own, given up on at the deadline.

        A blocked socket read cannot be interrupted from outside; the abandoned thread ends
        at its own socket timeout, and its connection is dropped rather than reused.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["response"] = super(CheckedSession, self).post(
                    url, data=data, json=json, **kwargs
                )
            except BaseException as exc:  # handed to the caller below, whatever it is
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=call, name="plex-call", daemon=True).start()
        if not done.wait(self.deadline_s):
            self.close()  # idle connections go; the stuck one is closed when it returns
            raise requests.exceptions.ReadTimeout(
                f"no complete answer within the {self.deadline_s:g} s deadline"
            )
        if "error" in box:
            raise box["error"]
        response: requests.Response = box["response"]
        return response


def open_session(cfg: PlexConfig) -> CheckedSession:
    """The HTTP session of one client: connect retries only, Basic auth when configured."""
    session = CheckedSession(deadline_s=cfg.operation_timeout_s)
    retry = Retry(
        total=cfg.connect_retries,
        connect=cfg.connect_retries,
        read=0,
        status=0,
        other=0,
        redirect=0,
        backoff_factor=0.2,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if cfg.username or cfg.password is not None:
        password = cfg.password.get_secret_value() if cfg.password is not None else ""
        session.auth = (cfg.username, password)
    return session


def soap_client(cfg: PlexConfig, session: requests.Session) -> tuple[Any, Any]:
    """zeep's hardened client over ``session`` and its service bound to ``cfg.endpoint``."""
    # zeep ships py.typed without annotations: its API is used through Any.
    z: Any = zeep
    transport = z.Transport(
        session=session,
        timeout=cfg.connect_timeout_s,
        operation_timeout=(cfg.connect_timeout_s, cfg.operation_timeout_s),
    )
    settings = z.Settings(
        strict=True,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
    client = z.Client(cfg.wsdl or str(WSDL_PATH), transport=transport, settings=settings)
    return client, client.create_service(_BINDINGS[cfg.soap_version], cfg.endpoint)

"""One Teams webhook post for every package that sends cards (report mail's card, notify).

Like :mod:`core.smtp`, each caller keeps its own error class; :func:`post` raises what
``fail`` builds: ``teams_unreachable`` (no answer, transient), ``teams_transient`` (429 or
5xx) or ``teams_rejected`` (another 4xx: the card or the URL is wrong, not transient).
"""

from __future__ import annotations

from typing import Any

import httpx

from core.smtp import Fail


def post(
    client: httpx.Client,
    url: str,
    payload: dict[str, Any],
    fail: Fail,
    *,
    headers: dict[str, str] | None = None,
) -> None:
    """POST ``payload`` as JSON to the workflow (or incoming) webhook at ``url``."""
    try:
        response = client.post(url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise fail(f"Teams webhook unreachable: {exc}", reason="teams_unreachable") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise fail(f"Teams webhook answered {response.status_code}", reason="teams_transient")
    if response.status_code >= 400:
        raise fail(
            f"Teams webhook refused the card: {response.status_code} {response.text[:200]}",
            reason="teams_rejected",
            transient=False,
        )

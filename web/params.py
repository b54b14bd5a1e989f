"""Path and query parameters, bounded and typed once for the pages and the API.

A parameter that reaches a query is checked here first, so nothing a client sends can
make the database driver fail: ids are positive and fit a signed 64-bit column (SQLite
raises ``OverflowError`` past 2**63 - 1, PostgreSQL an out-of-range error), names follow
the patterns the configuration gives them (PostgreSQL refuses a NUL in any text), and
report ids are the runner's (a uuid's hex, or ``sched-<schedule>-<time>``).

A query parameter is one value: ``?machine=a&machine=b`` is refused rather than read as
its last value (what Starlette does), which would answer for a question not asked.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import Path, Query, Request

from core.config.machines import MACHINE_ID_PATTERN
from web.errors import FormError

#: Largest id a row can have: a signed 64-bit integer.
MAX_ID = 2**63 - 1
#: Report request ids: a uuid's hex, or the scheduler's ``sched-<name>-<YYYYmmddTHHMM>``.
REQUEST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def _id(what: str) -> object:
    return Path(ge=1, le=MAX_ID, description=f"The {what}'s id.", examples=[1])


TicketId = Annotated[int, _id("ticket")]
EpisodeId = Annotated[int, _id("episode")]
SilenceId = Annotated[int, _id("silence")]
RequestId = Annotated[
    str,
    Path(
        pattern=REQUEST_ID_PATTERN,
        description="The report request's id.",
        examples=["5f0c6a1e9b7d4c3a8e2f1d0b9a8c7e6f"],
    ),
]
MachineId = Annotated[
    str,
    Path(
        pattern=MACHINE_ID_PATTERN,
        description="A configured machine id.",
        examples=["cnc103"],
    ),
]
MachineFilter = Annotated[
    str | None,
    Query(
        pattern=MACHINE_ID_PATTERN,
        description="Only this machine's rows (a configured machine id).",
        examples=["cnc103"],
    ),
]


def single_valued(request: Request) -> None:
    """Refuse a request that gives a query parameter more than once (a dependency).

    Raises:
        FormError: naming each repeated parameter (422).
    """
    counts = Counter(key for key, _ in request.query_params.multi_items())
    repeated = sorted(key[:64] for key, n in counts.items() if n > 1)
    if repeated:
        raise FormError({key: "Give this parameter once." for key in repeated})

"""A data source's answer as RepSys uses it: :class:`DataSourceResult`, or the error it says.

Plex reports a data-source failure *in the body* (``Error`` true, with ``StatusNo``,
``ErrorNo``, ``Message``, ``InstanceNo``), not as a SOAP fault: :func:`to_result` turns it
into :class:`PlexDataSourceError` (rejected) unless its ErrorNo is configured as transient.
The fields come from :mod:`plex.response` (lxml) or from zeep, whichever read the answer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from core.logs import get_logger
from plex.errors import PlexDataSourceError, PlexError, PlexTransientDataSourceError
from plex.response import ResultFields

log = get_logger(__name__)

#: Elements of Plex's answers already logged as unknown by this process (logged once each).
_UNKNOWN_LOGGED: set[str] = set()


@dataclass(frozen=True)
class DataSourceResult:
    """One data source's answer. Every value is a string, as Plex sends it.

    Attributes:
        result_sets: each result set's rows; a row maps column name to value in column
            order, so ``list(row.values())[i]`` is the column at position ``i + 1``.
        output_parameters: output parameter name -> value.
        instance_no: Plex's instance number of the call (for support tickets).
        message: Plex's message, ``"Success"`` when all went well.
    """

    data_source_key: int
    data_source_name: str
    result_sets: list[list[dict[str, str]]] = field(default_factory=list)
    output_parameters: dict[str, str] = field(default_factory=dict)
    instance_no: str = ""
    message: str = ""
    status_no: int = 0

    @property
    def rows(self) -> list[dict[str, str]]:
        """The first result set's rows (empty when Plex sent none)."""
        return self.result_sets[0] if self.result_sets else []


def note_unknown(names: tuple[str, ...], key: int) -> None:
    """Log each element RepSys skipped once per process: Plex added a field, nothing broke."""
    for name in names:
        if name not in _UNKNOWN_LOGGED:
            _UNKNOWN_LOGGED.add(name)
            log.debug("plex_response_unknown_element", element=name, data_source=key)


def text(value: Any) -> str:
    """A value zeep or lxml read, as text (``None`` is empty)."""
    return "" if value is None else str(value)


def to_result(
    fields: ResultFields, key: int, transient_errors: Collection[int]
) -> DataSourceResult:
    """The typed result, or the classified error when Plex says ``Error`` true.

    Raises:
        PlexTransientDataSourceError: ``Error`` with an ErrorNo in ``transient_errors``.
        PlexDataSourceError: ``Error`` with any other ErrorNo.
    """
    parsed = DataSourceResult(
        data_source_key=int(fields.data_source_key or key),
        data_source_name=text(fields.data_source_name),
        result_sets=fields.result_sets,
        output_parameters=fields.output_parameters,
        instance_no=text(fields.instance_no),
        message=text(fields.message),
        status_no=int(fields.status_no or 0),
    )
    if fields.error:
        error_no = int(fields.error_no or 0)
        message = (
            f"data source {key} failed: ErrorNo {error_no}, StatusNo {parsed.status_no}, "
            f"{parsed.message!r} (InstanceNo {parsed.instance_no or '-'})"
        )
        if error_no in transient_errors:
            exc: PlexError = PlexTransientDataSourceError(
                message, error_no=error_no, instance_no=parsed.instance_no
            )
        else:
            exc = PlexDataSourceError(
                message,
                error_no=error_no,
                status_no=parsed.status_no,
                instance_no=parsed.instance_no,
                data_source_key=key,
            )
        raise exc
    return parsed

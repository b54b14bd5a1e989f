"""Plex actions: what filing, finding and following a ticket mean in data-source calls.

No public Plex data source creates a work request, so each action is configuration
(``plex.actions``): a data source key and name, and input templates filled from the
ticket (``"@Workcenter_Key": "{workcenter_key}"``). Adding a ticket kind is a config
change, not code: see plex/README.md. This module fills templates, calls the client, and
reads the answer into typed results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from core.config.plex import ActionsConfig, TemplatedAction
from core.db.schema import Ticket
from plex.errors import PlexActionError
from plex.result import DataSourceResult


class DataSourceCaller(Protocol):
    """What actions need of a client: :meth:`plex.client.PlexClient.execute_data_source`."""

    def execute_data_source(
        self, key: int, params: Mapping[str, str], *, name: str | None = None
    ) -> DataSourceResult:
        """Run a data source; raise plex.errors exceptions."""


@dataclass(frozen=True)
class FiledTicket:
    """Plex's identity of a ticket: its number (people), key (calls) and the call's instance."""

    number: str
    key: str
    instance_no: str = ""
    status: str = ""


@dataclass(frozen=True)
class TicketStatus:
    """A filed ticket's state in Plex."""

    status: str
    closed: bool


def ticket_fields(ticket: Ticket, priorities: Mapping[str, str]) -> dict[str, str]:
    """The values a template may use (see core.config.plex.TEMPLATE_FIELDS)."""
    return {
        "external_ref": ticket.external_ref,
        "ticket_id": str(ticket.id),
        "kind": ticket.kind,
        "source": ticket.source,
        "machine_id": ticket.machine_id,
        "pcn": str(ticket.pcn),
        "workcenter_key": str(ticket.workcenter_key),
        "category": ticket.category,
        "severity": ticket.severity,
        "priority": priorities.get(ticket.severity, ticket.severity),
        "title": ticket.title,
        "description": ticket.description,
        "reporter": ticket.reporter,
        "created_at": ticket.created_at.isoformat() if ticket.created_at else "",
        "plex_key": ticket.plex_key or "",
        "plex_number": ticket.plex_number or "",
        # Filled by follow-up actions; empty elsewhere, so any template can be formatted.
        "note": "",
        "note_ref": "",
    }


def fill(action: TemplatedAction, fields: Mapping[str, str]) -> dict[str, str]:
    """The action's inputs with the ticket's values filled in."""
    return {name: template.format_map(fields) for name, template in action.inputs.items()}


def _column(row: Mapping[str, str], column: str, what: str) -> str:
    if column not in row:
        raise PlexActionError(
            f"{what}: the result has no column {column!r} (has {', '.join(row) or 'none'})",
            reason="bad_result",
        )
    return row[column]


class PlexActions:
    """File, find, follow tickets, and list workcenters, as configured."""

    def __init__(self, client: DataSourceCaller, cfg: ActionsConfig) -> None:
        self.client = client
        self.cfg = cfg

    def _call(self, action: TemplatedAction, ticket: Ticket) -> DataSourceResult:
        inputs = fill(action, ticket_fields(ticket, self.cfg.priorities))
        return self.client.execute_data_source(
            action.data_source_key, inputs, name=action.data_source_name or None
        )

    def file(self, ticket: Ticket) -> FiledTicket:
        """Create the ticket in Plex. Raises plex.errors exceptions."""
        action = self.cfg.create.get(ticket.kind)
        if action is None:
            raise PlexActionError(
                f"no plex.actions.create entry for ticket kind {ticket.kind!r}",
                reason="no_action",
            )
        result = self._call(action, ticket)
        if not result.rows:
            raise PlexActionError(
                f"{action.data_source_name or action.data_source_key} returned no row",
                reason="bad_result",
            )
        row = result.rows[0]
        return FiledTicket(
            number=_column(row, action.number_column, "create"),
            key=_column(row, action.key_column, "create"),
            instance_no=result.instance_no,
        )

    def lookup(self, ticket: Ticket) -> FiledTicket | None:
        """The ticket with this ticket's external reference in Plex, or ``None``.

        When Plex holds it more than once (filed twice before RepSys existed, or by hand)
        the oldest (lowest key) is the ticket; the others are reported by the caller.
        """
        action = self.cfg.lookup
        result = self._call(action, ticket)
        if not result.rows:
            return None
        rows = sorted(result.rows, key=lambda r: _sort_key(r.get(action.key_column, "")))
        row = rows[0]
        return FiledTicket(
            number=_column(row, action.number_column, "lookup"),
            key=_column(row, action.key_column, "lookup"),
            instance_no=result.instance_no,
            status=row.get(action.status_column, ""),
        )

    def status(self, ticket: Ticket) -> TicketStatus | None:
        """The filed ticket's status, or ``None`` when Plex no longer knows it."""
        action = self.cfg.status
        result = self._call(action, ticket)
        if not result.rows:
            return None
        status = _column(result.rows[0], action.status_column, "status")
        closed = status.strip().lower() in {v.lower() for v in action.closed_values}
        return TicketStatus(status=status, closed=closed)

    # -- follow-up of a filed ticket (issue 17; plex/followup.py) -------------------------

    def _follow(
        self, action: TemplatedAction, ticket: Ticket, extra: Mapping[str, str]
    ) -> DataSourceResult:
        fields = {**ticket_fields(ticket, self.cfg.priorities), **extra}
        return self.client.execute_data_source(
            action.data_source_key, fill(action, fields), name=action.data_source_name or None
        )

    def add_note(self, ticket: Ticket, note: str, ref: str) -> None:
        """Append ``note`` to the filed ticket, tagged ``ref``. Raises plex.errors."""
        self._follow(self.cfg.follow_up.note, ticket, {"note": note, "note_ref": ref})

    def note_refs(self, ticket: Ticket) -> set[str]:
        """References of the notes the filed ticket has (looked up before a resend)."""
        action = self.cfg.follow_up.notes
        result = self._follow(action, ticket, {"note": "", "note_ref": ""})
        return {row.get(action.ref_column, "") for row in result.rows} - {""}

    def set_priority(self, ticket: Ticket, priority: str) -> None:
        """Set the filed ticket's priority (idempotent by nature). Raises plex.errors."""
        fields = {"priority": priority, "note": "", "note_ref": ""}
        self._follow(self.cfg.follow_up.priority, ticket, fields)

    def workcenters(self) -> dict[int, str]:
        """Workcenter key -> code of every workcenter Plex lists."""
        action = self.cfg.workcenters
        result = self.client.execute_data_source(
            action.data_source_key, dict(action.inputs), name=action.data_source_name or None
        )
        out: dict[int, str] = {}
        for row in result.rows:
            raw = _column(row, action.key_column, "workcenters")
            try:
                out[int(raw)] = row.get(action.code_column, "")
            except ValueError:
                raise PlexActionError(
                    f"workcenters: key {raw!r} is not a number", reason="bad_result"
                ) from None
        return out


def _sort_key(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)

"""The simulated Plex's data sources and the tickets they create.

Each role (``sim.plex.data_sources``) is one handler: ``inputs -> result sets`` or a
:class:`DataSourceFailedError` (answered as an ``Error=true`` body, as Plex does). Ticket
creation is deliberately *not* idempotent on the external reference: the simulator must
expose a sender that sends twice, not hide it.

Data source 4814 answers from the seeded accounting ledger of ``sim.accounting`` (the
same data the simulated ODBC views expose), through a provider function that tests may
swap.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.config.sim_plex import SimWorkcenter
from sim.accounting.errors import LedgerError
from sim.accounting.ledger import Ledger

#: ``(pcns, period_start, period_end) -> rows`` with the 7 columns of data source 4814.
LedgerProvider = Callable[[list[int], int, int], list[dict[str, str]]]
ResultSets = list[list[dict[str, str]]]

#: Inputs each role takes: name -> required.
ROLE_INPUTS: dict[str, dict[str, bool]] = {
    "create_work_request": {
        "@Workcenter_Key": True,
        "@Title": False,
        "@Description": True,
        "@Priority": False,
        "@Requested_By": False,
        "@External_Ref": True,
    },
    "create_quality_problem": {
        "@Workcenter_Key": True,
        "@Title": False,
        "@Description": True,
        "@Priority": False,
        "@Requested_By": False,
        "@External_Ref": True,
        "@Category": False,
    },
    "lookup_by_ref": {"@External_Ref": True},
    "status": {"@Work_Request_Key": True},
    "workcenters": {"@PCN": False},
    "account_activity_summary": {"@PCNs": True, "@Period_Start": True, "@Period_End": True},
    "daily_shift_report": {"@Start_Date": True, "@End_Date": True},
    "workcenter_status": {"@Include_Non_Scheduled": False},
    # Follow-up of a filed ticket (issue 17): notes and priority.
    "add_note": {"@Work_Request_Key": True, "@Note": True, "@Note_Ref": False},
    "notes": {"@Work_Request_Key": True},
    "set_priority": {"@Work_Request_Key": True, "@Priority": True},
}


class DataSourceFailedError(Exception):
    """A data source failed: answered in the body with ``Error`` true."""

    def __init__(self, message: str, error_no: int = 50001) -> None:
        super().__init__(message)
        self.error_no = error_no


@dataclass
class SimTicket:
    """A work request or quality problem created in the simulated Plex."""

    key: int
    number: str
    kind: str
    external_ref: str
    workcenter_key: int
    title: str
    description: str
    priority: str
    requested_by: str
    category: str = ""
    status: str = "Open"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    closed_at: str = ""
    #: Notes appended to the ticket, oldest first: ``{"ref", "text", "at"}`` each.
    notes: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TicketStore:
    """Tickets created through the simulated data sources. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[int, SimTicket] = {}
        self._next_key = 500001

    def create(self, kind: str, inputs: Mapping[str, str], workcenter_key: int) -> SimTicket:
        prefix = "WR" if kind == "work_request" else "QP"
        with self._lock:
            key = self._next_key
            self._next_key += 1
            ticket = SimTicket(
                key=key,
                number=f"{prefix}-{key - 500000:06d}",
                kind=kind,
                external_ref=inputs.get("@External_Ref", ""),
                workcenter_key=workcenter_key,
                title=inputs.get("@Title", ""),
                description=inputs.get("@Description", ""),
                priority=inputs.get("@Priority", ""),
                requested_by=inputs.get("@Requested_By", ""),
                category=inputs.get("@Category", ""),
            )
            self._tickets[key] = ticket
            return ticket

    def all(self) -> list[SimTicket]:
        with self._lock:
            return [SimTicket(**asdict(t)) for t in self._tickets.values()]

    def by_ref(self, ref: str) -> list[SimTicket]:
        with self._lock:
            return [SimTicket(**asdict(t)) for t in self._tickets.values() if t.external_ref == ref]

    def get(self, key: int) -> SimTicket | None:
        with self._lock:
            ticket = self._tickets.get(key)
            return SimTicket(**asdict(ticket)) if ticket else None

    def set_status(self, key: int, status: str) -> SimTicket | None:
        """Change a ticket's status (``Closed`` closes it, as a planner would in Plex)."""
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None:
                return None
            ticket.status = status
            ticket.closed_at = datetime.now(UTC).isoformat() if status == "Closed" else ""
            return SimTicket(**asdict(ticket))

    def add_note(self, key: int, text: str, ref: str) -> SimTicket | None:
        """Append a note (not idempotent on ``ref``, like ticket creation: see above)."""
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None:
                return None
            note = {"ref": ref, "text": text, "at": datetime.now(UTC).isoformat()}
            ticket.notes.append(note)
            return SimTicket(**asdict(ticket))

    def set_priority(self, key: int, priority: str) -> SimTicket | None:
        with self._lock:
            ticket = self._tickets.get(key)
            if ticket is None:
                return None
            ticket.priority = priority
            return SimTicket(**asdict(ticket))

    def clear(self) -> None:
        with self._lock:
            self._tickets.clear()


def seeded_ledger_provider(seed: int) -> LedgerProvider:
    """Data source 4814 from the seeded ledger of ``sim.accounting`` (built once)."""
    ledger = Ledger.seeded(seed)

    def provider(pcns: list[int], period_start: int, period_end: int) -> list[dict[str, str]]:
        try:
            return ledger.account_activity_summary(pcns, period_start, period_end)
        except LedgerError as exc:
            raise DataSourceFailedError(str(exc)) from exc

    return provider


def _period(value: str, name: str) -> int:
    try:
        period = int(value)
    except ValueError:
        raise DataSourceFailedError(f"{name} {value!r} is not a period YYYYMM") from None
    if not (190001 <= period <= 299913) or not (1 <= period % 100 <= 13):
        raise DataSourceFailedError(f"{name} {value!r} is not a period YYYYMM")
    return period


def _date(value: str, name: str) -> date:
    for fmt in ("%m/%d/%Y", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise DataSourceFailedError(f"{name} {value!r} is not a date (MM/DD/YYYY)")


def _noise(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


class DataSources:
    """The handlers behind the simulated data sources."""

    def __init__(
        self,
        workcenters: list[SimWorkcenter],
        store: TicketStore,
        ledger: LedgerProvider,
    ) -> None:
        self.workcenters = {w.key: w for w in workcenters}
        self.store = store
        self.ledger = ledger

    def run(self, role: str, inputs: Mapping[str, str]) -> ResultSets:
        """Answer ``role`` for ``inputs``. Raises :class:`DataSourceFailedError`."""
        for name, required in ROLE_INPUTS[role].items():
            if required and not inputs.get(name, "").strip():
                raise DataSourceFailedError(f"Input parameter {name} is required.", error_no=50002)
        handler: Callable[[Mapping[str, str]], ResultSets] = getattr(self, f"_{role}")
        return handler(inputs)

    def _workcenter(self, inputs: Mapping[str, str]) -> int:
        raw = inputs["@Workcenter_Key"]
        try:
            key = int(raw)
        except ValueError:
            raise DataSourceFailedError(f"Workcenter_Key {raw!r} is not a number") from None
        if key not in self.workcenters:
            raise DataSourceFailedError(f"Workcenter_Key {key} does not exist", error_no=50003)
        return key

    def _created(self, ticket: SimTicket, number_col: str, key_col: str) -> ResultSets:
        return [[{key_col: str(ticket.key), number_col: ticket.number}]]

    def _create_work_request(self, inputs: Mapping[str, str]) -> ResultSets:
        ticket = self.store.create("work_request", inputs, self._workcenter(inputs))
        return self._created(ticket, "Work_Request_No", "Work_Request_Key")

    def _create_quality_problem(self, inputs: Mapping[str, str]) -> ResultSets:
        ticket = self.store.create("quality_problem", inputs, self._workcenter(inputs))
        return self._created(ticket, "Problem_No", "Problem_Key")

    @staticmethod
    def _ticket_row(ticket: SimTicket) -> dict[str, str]:
        return {
            "Work_Request_Key": str(ticket.key),
            "Work_Request_No": ticket.number,
            "Status": ticket.status,
            "Workcenter_Key": str(ticket.workcenter_key),
            "Request_Date": ticket.created_at,
            "Closed_Date": ticket.closed_at,
        }

    def _lookup_by_ref(self, inputs: Mapping[str, str]) -> ResultSets:
        return [[self._ticket_row(t) for t in self.store.by_ref(inputs["@External_Ref"])]]

    def _status(self, inputs: Mapping[str, str]) -> ResultSets:
        try:
            ticket = self.store.get(int(inputs["@Work_Request_Key"]))
        except ValueError:
            raise DataSourceFailedError("Work_Request_Key is not a number") from None
        return [[self._ticket_row(ticket)] if ticket else []]

    def _ticket_key(self, inputs: Mapping[str, str]) -> int:
        try:
            key = int(inputs["@Work_Request_Key"])
        except ValueError:
            raise DataSourceFailedError("Work_Request_Key is not a number") from None
        if self.store.get(key) is None:
            raise DataSourceFailedError(f"Work_Request_Key {key} does not exist", error_no=50004)
        return key

    def _add_note(self, inputs: Mapping[str, str]) -> ResultSets:
        key = self._ticket_key(inputs)
        ticket = self.store.add_note(key, inputs["@Note"], inputs.get("@Note_Ref", ""))
        assert ticket is not None
        return [[{"Work_Request_Key": str(key), "Note_No": str(len(ticket.notes))}]]

    def _notes(self, inputs: Mapping[str, str]) -> ResultSets:
        ticket = self.store.get(self._ticket_key(inputs))
        assert ticket is not None
        return [
            [
                {"Note_No": str(n + 1), "Note_Ref": note["ref"], "Note": note["text"]}
                for n, note in enumerate(ticket.notes)
            ]
        ]

    def _set_priority(self, inputs: Mapping[str, str]) -> ResultSets:
        key = self._ticket_key(inputs)
        self.store.set_priority(key, inputs["@Priority"])
        return [[{"Work_Request_Key": str(key), "Priority": inputs["@Priority"]}]]

    def _workcenters(self, inputs: Mapping[str, str]) -> ResultSets:
        pcn = inputs.get("@PCN", "").strip()
        return [
            [
                {
                    "Workcenter_Key": str(w.key),
                    "Workcenter_Code": w.code,
                    "PCN": str(w.pcn),
                    "Active": "1",
                }
                for w in self.workcenters.values()
                if not pcn or str(w.pcn) == pcn
            ]
        ]

    def _account_activity_summary(self, inputs: Mapping[str, str]) -> ResultSets:
        try:
            pcns = [int(p) for p in inputs["@PCNs"].split(",") if p.strip()]
        except ValueError:
            raise DataSourceFailedError("@PCNs must be a comma-separated list of PCNs") from None
        start = _period(inputs["@Period_Start"], "@Period_Start")
        end = _period(inputs["@Period_End"], "@Period_End")
        if start > end:
            raise DataSourceFailedError("@Period_Start is after @Period_End")
        return [self.ledger(pcns, start, end)]

    def _daily_shift_report(self, inputs: Mapping[str, str]) -> ResultSets:
        start = _date(inputs["@Start_Date"], "@Start_Date")
        end = _date(inputs["@End_Date"], "@End_Date")
        if (end - start).days > 62:
            raise DataSourceFailedError("date range longer than 62 days")
        rows = []
        day = start
        while day <= end:
            for w in self.workcenters.values():
                n = _noise(w.key, day)
                produced = 200 + n % 150
                scrapped = n % 7
                rows.append(
                    {
                        "Report_Date": day.strftime("%m/%d/%Y"),
                        "Workcenter_Code": w.code,
                        "Part_No": f"KN-{w.key % 1000:03d}",
                        "Operation_No": "10",
                        "Produced": str(produced),
                        "Scrapped": str(scrapped),
                        "Earned_Hours": f"{produced * 0.035:.2f}",
                        "Actual_Hours": f"{7.5 + (n % 10) / 10:.2f}",
                    }
                )
            day += timedelta(days=1)
        return [rows]

    def _workcenter_status(self, inputs: Mapping[str, str]) -> ResultSets:
        include = inputs.get("@Include_Non_Scheduled", "0").strip().lower() in ("1", "true")
        rows = []
        for w in self.workcenters.values():
            n = _noise(w.key, "status")
            scheduled = n % 5 != 0
            if not scheduled and not include:
                continue
            rows.append(
                {
                    "Workcenter_Key": str(w.key),
                    "Workcenter_Code": w.code,
                    "Workcenter_Status": "Running" if scheduled else "Not Scheduled",
                    "Part_No": f"KN-{w.key % 1000:03d}",
                    "Job_No": f"J{n % 100000:05d}",
                }
            )
        return [rows]

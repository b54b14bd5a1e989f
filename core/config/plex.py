"""Configuration section ``plex:``, validated by the model below (owned by ``plex/``).

Everything tenant-specific about Plex lives here: the endpoint and its environment, the
web-service account, and the *actions*: which data source (key, name, input names) files
a ticket of each kind, finds a ticket by its reference, reads its status, and lists the
workcenters. No public Plex data source is known to create a work request, so those keys
are the plant's own (see plex/README.md); the defaults match the simulator.

The environment guard (:func:`endpoint_problem`) is checked here, at load, so a test
configuration pointing at production (or the reverse) never starts; the client checks it
again when it is built from code.
"""

from __future__ import annotations

import ipaddress
import string
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel

#: Ticket fields an action's input template may use: ``"{workcenter_key}"``.
TEMPLATE_FIELDS = frozenset(
    {
        "external_ref",
        "ticket_id",
        "kind",
        "source",
        "machine_id",
        "pcn",
        "workcenter_key",
        "category",
        "severity",
        "priority",
        "title",
        "description",
        "reporter",
        "created_at",
        "plex_key",
        "plex_number",
        # Follow-up actions (issue 17): the note's text and its idempotency reference.
        "note",
        "note_ref",
    }
)


def template_fields(template: str) -> set[str]:
    """The ``{names}`` a template uses (``ValueError`` on a malformed template)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(environment: str, url: str) -> str | None:  # noqa: PLR0911 - one rule per return
    """Why ``url`` does not belong to ``environment`` (``None`` when it does).

    * ``simulator``: a loopback host only (the simulated Plex), plain HTTP allowed.
    * ``test``: HTTPS, a host whose first label starts with ``test`` (Plex names its test
      hosts ``testapi.plexonline.com`` / ``test.connect.plex.com``).
    * ``production``: HTTPS, a host that is neither loopback nor a ``test`` host.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        return f"endpoint {url!r} is not an http(s) URL"
    loopback = is_loopback(host)
    test_host = host.split(".", 1)[0].startswith("test")
    if environment == "simulator":
        if not loopback:
            return f"environment 'simulator' needs a loopback endpoint, not host {host!r}"
        return None
    if parts.scheme != "https":
        return f"environment {environment!r} needs an https endpoint (Basic auth over http)"
    if loopback:
        return f"environment {environment!r} must not point at loopback; use 'simulator'"
    if environment == "test" and not test_host:
        return f"environment 'test' but host {host!r} is not a Plex test host"
    if environment == "production" and test_host:
        return f"environment 'production' but host {host!r} is a Plex test host"
    return None


def claim_margin_s(operation_timeout_s: float, max_wait_s: float) -> float:
    """Claim time one ticket may need: a lookup and a send, each waiting and timing out."""
    return 2 * (operation_timeout_s + max_wait_s) + 5


class DataSourceRef(StrictModel):
    """A Plex data source: its key (what is called) and its name (what logs say)."""

    data_source_key: int = Field(gt=0, description="Plex data source key (Data Sources screen).")
    data_source_name: str = Field(default="", description="Its name, for logs and the request.")


class TemplatedAction(DataSourceRef):
    """A data source called with inputs filled from a ticket."""

    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Input name (with its @) -> template of ticket fields, e.g. '{title}'.",
    )

    @field_validator("inputs")
    @classmethod
    def _templates_known(cls, inputs: dict[str, str]) -> dict[str, str]:
        for name, template in inputs.items():
            if not name.startswith("@"):
                raise ValueError(f"input name {name!r} must start with '@'")
            try:
                used = template_fields(template)
            except ValueError as exc:
                raise ValueError(f"input {name}: bad template {template!r}: {exc}") from None
            unknown = sorted(used - TEMPLATE_FIELDS)
            if unknown:
                raise ValueError(
                    f"input {name}: unknown ticket field {unknown[0]!r} "
                    f"(known: {', '.join(sorted(TEMPLATE_FIELDS))})"
                )
        return inputs


class CreateAction(TemplatedAction):
    """Files a ticket of one kind; the result's first row names the new ticket."""

    number_column: str = Field(default="Work_Request_No", description="Column of the number.")
    key_column: str = Field(default="Work_Request_Key", description="Column of the Plex key.")


class LookupAction(TemplatedAction):
    """Finds a ticket by its external reference (used before any resend)."""

    number_column: str = "Work_Request_No"
    key_column: str = "Work_Request_Key"
    status_column: str = "Status"


class StatusAction(TemplatedAction):
    """Reads one filed ticket's status."""

    status_column: str = "Status"
    closed_values: list[str] = Field(
        default_factory=lambda: ["Closed", "Complete", "Completed", "Cancelled"],
        description="Status values that mean the ticket is closed in Plex.",
    )


class WorkcentersAction(DataSourceRef):
    """Lists the workcenters of a PCN (the master-data check)."""

    inputs: dict[str, str] = Field(default_factory=dict, description="Fixed input values.")
    key_column: str = "Workcenter_Key"
    code_column: str = "Workcenter_Code"


def _default_create_actions() -> dict[str, CreateAction]:
    common = {
        "@Workcenter_Key": "{workcenter_key}",
        "@Title": "{title}",
        "@Description": "{description}",
        "@Priority": "{priority}",
        "@Requested_By": "{reporter}",
        "@External_Ref": "{external_ref}",
    }
    return {
        "maintenance_work_request": CreateAction(
            data_source_key=910001, data_source_name="Work_Request_Add", inputs=common
        ),
        "quality_problem": CreateAction(
            data_source_key=910002,
            data_source_name="Quality_Problem_Add",
            inputs={**common, "@Category": "{category}"},
            number_column="Problem_No",
            key_column="Problem_Key",
        ),
    }


class NotesAction(TemplatedAction):
    """Lists the notes of a filed ticket (looked up before a note is sent again)."""

    ref_column: str = Field(default="Note_Ref", description="Column of a note's reference.")


class FollowUpActions(StrictModel):
    """Follow-up of a filed ticket: notes on escalation, recurrence and clear; priority."""

    note: TemplatedAction = TemplatedAction(
        data_source_key=910020,
        data_source_name="Work_Request_Note_Add",
        inputs={"@Work_Request_Key": "{plex_key}", "@Note": "{note}", "@Note_Ref": "{note_ref}"},
    )
    notes: NotesAction = NotesAction(
        data_source_key=910021,
        data_source_name="Work_Request_Notes_Get",
        inputs={"@Work_Request_Key": "{plex_key}"},
    )
    priority: TemplatedAction = TemplatedAction(
        data_source_key=910022,
        data_source_name="Work_Request_Priority_Update",
        inputs={"@Work_Request_Key": "{plex_key}", "@Priority": "{priority}"},
    )
    raised_priority: str = Field(
        default="1", description="The {priority} value sent when a receiver raises priority."
    )
    batch_size: int = Field(default=20, ge=1, description="Plex deliveries claimed per pass.")


class ActionsConfig(StrictModel):
    """Which data source does what. Keys and input names are the plant's own."""

    create: dict[str, CreateAction] = Field(
        default_factory=_default_create_actions,
        description="Ticket kind (tickets.kind) -> the data source that files it.",
    )
    lookup: LookupAction = LookupAction(
        data_source_key=910010,
        data_source_name="Work_Request_By_External_Ref_Get",
        inputs={"@External_Ref": "{external_ref}"},
    )
    status: StatusAction = StatusAction(
        data_source_key=910011,
        data_source_name="Work_Request_Status_Get",
        inputs={"@Work_Request_Key": "{plex_key}"},
    )
    workcenters: WorkcentersAction = WorkcentersAction(
        data_source_key=910012, data_source_name="Workcenters_Get"
    )
    priorities: dict[str, str] = Field(
        default_factory=lambda: {"low": "3", "medium": "2", "high": "1"},
        description="Ticket severity -> the value of the {priority} template field.",
    )
    follow_up: FollowUpActions = FollowUpActions()


class RateLimitConfig(StrictModel):
    """One limit shared by every sender through Redis (Plex allows about 200 a minute)."""

    per_minute: int = Field(default=200, ge=1, description="Calls a minute, all senders.")
    burst: int = Field(default=5, ge=1, description="Calls allowed back to back.")
    max_wait_s: float = Field(
        default=60.0, gt=0, description="Longest wait for a slot before giving up the call."
    )


class SenderConfig(StrictModel):
    """The outbox sender: claims, retries, dead letters."""

    batch_size: int = Field(default=20, ge=1, le=1000, description="Rows claimed at once.")
    poll_interval_s: float = Field(default=2.0, gt=0, description="Idle wait between claims.")
    claim_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="A claim older than this is a dead sender's; must exceed "
        "2 x (operation_timeout_s + rate_limit.max_wait_s) + 5.",
    )
    max_attempts: int = Field(
        default=50, ge=1, description="Transient failures before a row is dead-lettered."
    )
    backoff_base_s: float = Field(default=5.0, gt=0, description="First retry delay.")
    backoff_cap_s: float = Field(default=600.0, gt=0, description="Longest retry delay.")
    ambiguous_delay_s: float = Field(
        default=30.0,
        ge=0,
        description="Least wait after an ambiguous failure before the lookup, so a request "
        "still running in Plex has finished.",
    )


class StatusFollowUpConfig(StrictModel):
    """Filed tickets' status synced back from Plex; age drives escalation."""

    interval_s: float = Field(default=300.0, gt=0, description="Seconds between sweeps.")
    batch_size: int = Field(default=100, ge=1, description="Tickets checked per sweep.")
    escalate_after_h: list[float] = Field(
        default_factory=lambda: [4.0, 24.0, 72.0],
        description="Open-ticket ages (hours) that raise escalation_level to 1, 2, 3, ...",
    )

    @field_validator("escalate_after_h")
    @classmethod
    def _ascending(cls, hours: list[float]) -> list[float]:
        if hours != sorted(hours) or any(h <= 0 for h in hours):
            raise ValueError("must be positive and ascending")
        return hours


class PlexConfig(StrictModel):
    """Settings of the ``plex`` package. Every key has a default and a description."""

    environment: Literal["production", "test", "simulator"] = Field(
        default="simulator",
        description="Which Plex the endpoint must be; a mismatch refuses to start.",
    )
    endpoint: str = Field(
        default="http://127.0.0.1:8731/DataSource/Service.asmx",
        description="Service.asmx URL (production api.plexonline.com, test testapi...).",
    )
    username: str = Field(default="", description="Web-service account, e.g. CompanyWs@plex.com.")
    password: OptionalSecret = Field(default=None, description="Its password ({env: NAME}).")
    soap_version: Literal["1.1", "1.2"] = Field(default="1.1", description="SOAP binding used.")
    wsdl: str = Field(default="", description="WSDL file; empty = the one shipped in plex/wsdl.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect timeout.")
    operation_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Total deadline of one call (connect, send and read together); "
        "then the call is ambiguous.",
    )
    connect_retries: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed connect (never of a sent call)."
    )
    transient_error_numbers: list[int] = Field(
        default_factory=list,
        description="In-body ErrorNo values worth retrying; other Error=true bodies dead-letter.",
    )
    master_data_check: Literal["fatal", "warning", "off"] = Field(
        default="warning",
        description="At start: every machine's workcenter must exist in Plex; fatal exits 1.",
    )
    actions: ActionsConfig = ActionsConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    sender: SenderConfig = SenderConfig()
    status: StatusFollowUpConfig = StatusFollowUpConfig()

    @model_validator(mode="after")
    def _environment_matches(self) -> PlexConfig:
        problem = endpoint_problem(self.environment, self.endpoint)
        if problem:
            raise ValueError(problem)
        margin = claim_margin_s(self.operation_timeout_s, self.rate_limit.max_wait_s)
        if self.sender.claim_ttl_s <= margin:
            raise ValueError(
                f"sender.claim_ttl_s {self.sender.claim_ttl_s:g} must exceed {margin:g} "
                "(2 x (operation_timeout_s + rate_limit.max_wait_s) + 5)"
            )
        if self.environment != "simulator" and (not self.username or self.password is None):
            raise ValueError(f"environment {self.environment!r} needs username and password")
        return self

"""Configuration section ``sim.plex:`` (owned by ``sim/plex/``).

The simulated Plex serves the shipped WSDL on a loopback port, checks HTTP Basic auth,
and answers a handful of data sources. Faults are switched on here (probabilities per
request) or at run time through its admin endpoint (see sim/README.md).
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from core.config.base import OptionalSecret, StrictModel

#: Fault kinds the simulator can inject, in the order they are drawn.
FAULT_KINDS = (
    "latency",
    "http_500",
    "http_401",
    "http_429",
    "error_body",
    "malformed_xml",
    "xxe",
    "timeout_after_commit",
    "commit_late",
)


class SimFaultsConfig(StrictModel):
    """Probability (0..1) per request of each fault; their sum must stay at most 1."""

    latency: float = Field(default=0.0, ge=0, le=1, description="Answer after latency_s.")
    http_500: float = Field(default=0.0, ge=0, le=1, description="HTTP 500, HTML body.")
    http_401: float = Field(default=0.0, ge=0, le=1, description="HTTP 401 despite good auth.")
    http_429: float = Field(default=0.0, ge=0, le=1, description="HTTP 429 + Retry-After.")
    error_body: float = Field(default=0.0, ge=0, le=1, description="Error=true in the body.")
    malformed_xml: float = Field(default=0.0, ge=0, le=1, description="Truncated XML.")
    xxe: float = Field(default=0.0, ge=0, le=1, description="A body with a DTD and entities.")
    timeout_after_commit: float = Field(
        default=0.0, ge=0, le=1, description="Commit, then never answer (hang, then close)."
    )
    commit_late: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Hold the request commit_delay_s (the client gives up), then commit and "
        "close without an answer: Plex finishing a request after the client's timeout.",
    )
    latency_s: float = Field(default=0.5, ge=0, description="Delay of the latency fault.")
    hang_s: float = Field(
        default=35.0, ge=0, description="How long timeout_after_commit holds the connection."
    )
    commit_delay_s: float = Field(
        default=20.0, ge=0, description="When commit_late commits, after the request arrived."
    )
    retry_after_s: int = Field(default=2, ge=0, description="Retry-After of the 429 fault.")
    seed: int = Field(default=1, description="Seed of the fault dice (repeatable runs).")

    def total(self) -> float:
        return sum(float(getattr(self, k)) for k in FAULT_KINDS)

    @model_validator(mode="after")
    def _at_most_one(self) -> SimFaultsConfig:
        if self.total() > 1.0:
            raise ValueError(f"fault probabilities sum to {self.total():.2f}, more than 1")
        return self


class SimDataSource(StrictModel):
    """Key and name under which one simulated data source answers."""

    key: int = Field(gt=0, description="Data source key.")
    name: str = Field(min_length=1, description="Data source name.")


#: The roles a simulated data source can play (keys of ``sim.plex.data_sources``).
DATA_SOURCE_ROLES = (
    "create_work_request",
    "create_quality_problem",
    "lookup_by_ref",
    "status",
    "workcenters",
    "account_activity_summary",
    "daily_shift_report",
    "workcenter_status",
    "add_note",
    "notes",
    "set_priority",
)


def _default_data_sources() -> dict[str, SimDataSource]:
    return {
        "create_work_request": SimDataSource(key=910001, name="Work_Request_Add"),
        "create_quality_problem": SimDataSource(key=910002, name="Quality_Problem_Add"),
        "lookup_by_ref": SimDataSource(key=910010, name="Work_Request_By_External_Ref_Get"),
        "status": SimDataSource(key=910011, name="Work_Request_Status_Get"),
        "workcenters": SimDataSource(key=910012, name="Workcenters_Get"),
        "account_activity_summary": SimDataSource(
            key=4814, name="Account_Activity_Summary_xPCN_Get"
        ),
        "daily_shift_report": SimDataSource(key=9726, name="Daily_Shift_Report_Get"),
        "workcenter_status": SimDataSource(key=37686, name="Workcenter_Status_Get"),
        "add_note": SimDataSource(key=910020, name="Work_Request_Note_Add"),
        "notes": SimDataSource(key=910021, name="Work_Request_Notes_Get"),
        "set_priority": SimDataSource(key=910022, name="Work_Request_Priority_Update"),
    }


class SimWorkcenter(StrictModel):
    """A workcenter the simulated Plex knows (default: the configured machines')."""

    key: int = Field(gt=0, description="Workcenter_Key.")
    code: str = Field(min_length=1, description="Workcenter_Code.")
    pcn: int = Field(default=123681, gt=0, description="PCN it belongs to.")


class SimPlexConfig(StrictModel):
    """Settings of the simulated Plex. Every key has a default and a description."""

    host: str = Field(default="127.0.0.1", description="Listen address (loopback).")
    port: int = Field(default=8731, ge=0, le=65535, description="Listen port; 0 = any free.")
    username: str = Field(default="RepsysWs@plex.com", description="Accepted Basic user.")
    password: OptionalSecret = Field(
        default=None, description="Accepted Basic password; none = any password for username."
    )
    workcenters: list[SimWorkcenter] = Field(
        default_factory=list,
        description="Known workcenters; empty = those of the top-level machines list.",
    )
    data_sources: dict[str, SimDataSource] = Field(
        default_factory=_default_data_sources,
        description="Simulated data source (by role) -> the key and name it answers to.",
    )

    ledger_seed: int = Field(default=1, description="Seed of the accounting data (4814).")
    unknown_elements: bool = Field(
        default=False,
        description=(
            "Add elements the WSDL does not know to every answer (a result field, one per "
            "result set, column and template input), as a Plex that added fields would."
        ),
    )
    faults: SimFaultsConfig = SimFaultsConfig()

    @field_validator("data_sources")
    @classmethod
    def _known_roles(cls, sources: dict[str, SimDataSource]) -> dict[str, SimDataSource]:
        for role in sources:
            if role not in DATA_SOURCE_ROLES:
                raise ValueError(f"unknown role {role!r} (known: {', '.join(DATA_SOURCE_ROLES)})")
        keys = [s.key for s in sources.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("two roles share one data source key")
        return sources

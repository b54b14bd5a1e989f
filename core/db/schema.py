"""SQLAlchemy 2 models of every table RepSys keeps in its database.

The database is the system of record: tickets (the Plex outbox), episodes, silences,
report requests and their runs live here, not in Redis. Portable types only, so the same
schema runs on SQLite (embedded default), PostgreSQL (production and tests), and, for the
warehouse, MySQL and SQL Server. Timestamps are timezone-aware UTC.

Changing a table: edit the model here, then ``make migration`` (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints so migrations are the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """An instant, stored and compared as UTC on every database.

    SQLite has no timezone-aware type: SQLAlchemy writes an aware value's wall-clock
    digits as text and drops the offset, so a plant-time bound (06:00 CST) compared with
    UTC rows was off by the offset. Binding converts every value to UTC first (a naive
    value is taken as UTC, RepSys's convention everywhere), and reading attaches UTC.
    PostgreSQL's ``timestamptz`` gets the same UTC values. The DDL is unchanged.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON,
    }


class MachineRow(Base):
    """Machines and their Plex mapping, synced from configuration at start-up."""

    __tablename__ = "machines"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    pcn: Mapped[int] = mapped_column(Integer)
    workcenter_key: Mapped[int] = mapped_column(Integer)
    workcenter_code: Mapped[str] = mapped_column(String(128))
    building: Mapped[str] = mapped_column(String(64), default="")
    cell: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Episode(Base):
    """One anomaly, from first detection to resolution (Alertmanager's alert instance).

    ``fingerprint`` names the series (machine, rule, subject); ``occurrence`` counts its
    episodes. The pair is unique, so replaying the same stream entries after a crash hits
    the constraint instead of opening a second episode.
    """

    __tablename__ = "episodes"
    __table_args__ = (
        UniqueConstraint("fingerprint", "occurrence", name="uq_episodes_fingerprint_occurrence"),
        Index("ix_episodes_state_machine", "state", "machine_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    occurrence: Mapped[int] = mapped_column(Integer, default=1)
    machine_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64), doc="Configured rule name.")
    rule_type: Mapped[str] = mapped_column(String(64), doc="Rule type, e.g. counter_jump.")
    subject: Mapped[str] = mapped_column(String(128), default="", doc="Tool, pallet, ...")
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    state: Mapped[str] = mapped_column(String(16), default="firing")
    summary: Mapped[str] = mapped_column(String(512), default="")
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(doc="Source time of the first anomaly.")
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    repeat_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Ticket(Base):
    """The Plex outbox: one row per ticket, automatic or filed by an operator.

    ``external_ref`` is the idempotency key sent to Plex with the ticket and used to look
    it up after an ambiguous failure; it is unique, so a ticket exists in Plex at most
    once. The sender claims due rows (``state`` pending, ``next_attempt_at`` past) by
    setting ``claimed_by`` / ``claimed_until``.
    """

    __tablename__ = "tickets"
    __table_args__ = (Index("ix_tickets_state_next_attempt", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    external_ref: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16), doc="rule or operator")
    kind: Mapped[str] = mapped_column(
        String(64), default="maintenance_work_request", doc="Plex action kind from config."
    )
    episode_id: Mapped[int | None] = mapped_column(
        ForeignKey("episodes.id", ondelete="SET NULL"), default=None, index=True
    )
    machine_id: Mapped[str] = mapped_column(String(64), index=True)
    pcn: Mapped[int] = mapped_column(Integer)
    workcenter_key: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(32), default="")
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    title: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text)
    reporter: Mapped[str] = mapped_column(String(128), default="", doc="Badge or rule name.")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    plex_number: Mapped[str | None] = mapped_column(String(64), default=None)
    plex_key: Mapped[str | None] = mapped_column(String(64), default=None)
    plex_instance: Mapped[str | None] = mapped_column(String(64), default=None)
    plex_status: Mapped[str | None] = mapped_column(String(64), default=None)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    filed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    status_checked_at: Mapped[datetime | None] = mapped_column(default=None)


class TicketEvent(Base):
    """History of a ticket: created, claimed, sent, retried, filed, dead, replayed, ..."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class Silence(Base):
    """A maintenance window: anomalies matching it open no ticket until it ends."""

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    machine_id: Mapped[str | None] = mapped_column(String(64), default=None, doc="None: all.")
    rule: Mapped[str | None] = mapped_column(String(64), default=None, doc="None: all rules.")
    author: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(512))
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expired_by: Mapped[str | None] = mapped_column(String(128), default=None)


class ReportRequestRow(Base):
    """A report request and its state, as the requester sees it in the queue."""

    __tablename__ = "report_requests"
    __table_args__ = (Index("ix_report_requests_state_created", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(128), doc="e.g. TB_202404_to_202404")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(256), index=True)
    requester: Mapped[str] = mapped_column(String(128), default="")
    state: Mapped[str] = mapped_column(String(16), default="pending")
    current_step: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result_path: Mapped[str | None] = mapped_column(String(512), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    notified_at: Mapped[datetime | None] = mapped_column(default=None)


class ReportRun(Base):
    """One attempt of a pipeline on a request, under one fencing number."""

    __tablename__ = "report_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(
        ForeignKey("report_requests.id", ondelete="CASCADE"), index=True
    )
    fence: Mapped[int] = mapped_column(BigInteger)
    runner: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class StepRun(Base):
    """The script history: each ETL step's start, end, status, rows and error."""

    __tablename__ = "step_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("report_runs.id", ondelete="CASCADE"), index=True
    )
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    step: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer)
    fence: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="running")
    rows: Mapped[int | None] = mapped_column(Integer, default=None)
    output: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Fence(Base):
    """Highest fencing number that has written to a report kind's warehouse scope.

    Every load step runs ``UPDATE fences SET fence = :mine WHERE kind = :k AND fence <= :mine``
    in its own transaction and aborts when no row changed: a runner that lost its mutex
    (paused, partitioned) cannot write over a newer run.
    """

    __tablename__ = "fences"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    fence: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Base):
    """A web user: local account (password), operator (badge + PIN), or proxy-provided."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    badge: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    pin_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    roles: Mapped[str] = mapped_column(String(256), default="operator", doc="Comma-separated.")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """An API token for another system; only its hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    roles: Mapped[str] = mapped_column(String(256), default="")
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


# --- Deliveries of ticket events (issue 17, notify/): the notification outbox. ---


class NotifyDelivery(Base):
    """One message to one receiver's integration (e-mail, Teams, Plex), sent at most once.

    Claimed by a delivery sender like a ticket row (``claimed_by`` / ``claimed_until``);
    retried with backoff; ``dead`` with the reason after a refusal or too many attempts,
    replayable. ``payload`` holds what the message says, rendered when it is cut.
    """

    __tablename__ = "notify_deliveries"
    __table_args__ = (Index("ix_notify_deliveries_state_next_attempt", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True, doc="Idempotency key (Message-ID).")
    receiver: Mapped[str] = mapped_column(String(64))
    integration: Mapped[str] = mapped_column(String(16), doc="email, teams or plex.")
    route: Mapped[str] = mapped_column(String(128), default="")
    group_key: Mapped[str] = mapped_column(String(512), default="")
    repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_error_reason: Mapped[str | None] = mapped_column(String(64), default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class NotifyDeliveryItem(Base):
    """What a delivery carries: one (ticket event, receiver, integration) each, unique.

    The unique constraint makes "exactly once per (ticket, event, receiver)" a database
    fact: a second message carrying the same event to the same receiver cannot be written.
    """

    __tablename__ = "notify_delivery_items"
    __table_args__ = (
        UniqueConstraint(
            "item_key", "receiver", "integration", name="uq_notify_delivery_items_key"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("notify_deliveries.id", ondelete="CASCADE"), index=True
    )
    item_key: Mapped[str] = mapped_column(String(128), doc="ticket:event:n[#repeatN].")
    receiver: Mapped[str] = mapped_column(String(64))
    integration: Mapped[str] = mapped_column(String(16))
    ticket_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)


class NotifyState(Base):
    """The dispatcher's checkpoint: its groups and the last ticket event it routed.

    Written in the same transaction as the deliveries it cut, so a crash replays from a
    consistent point and never cuts a message twice.
    """

    __tablename__ = "notify_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

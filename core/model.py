"""Messages between processes: signals on the streams, report requests on the queue.

Every message carries a version ``v``. A reader that meets a version it does not know, or
an entry that does not decode, raises :class:`DecodeError` (a ``RejectedError`` with a
reason); the caller puts the raw entry on a dead-letter stream and goes on.

:class:`Signal` is a frozen, slotted dataclass rather than a pydantic model: it is built
and decoded tens of thousands of times a second on two cores, and the checks it needs are
few and written out in :meth:`Signal.from_fields`. Slower, richer messages (report
requests) are pydantic models.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from core.errors import RejectedError
from core.wire import (
    BODY,
    FLAT_AT,
    FLAT_MAX_LEN,
    FLAT_REQUIRED_KEYS,
    FLAT_REQUIRED_LEN,
    FLAT_TAILS,
    REPORT_REQUEST_V,
    REPORT_REQUEST_VERSION,
    RTS,
    SIGNAL_V,
    SIGNAL_VERSION,
    TS,
    A,
    M,
    N,
    Q,
    S,
    V,
    X,
    signal_fields,
)

__all__ = ["REPORT_REQUEST_VERSION", "SIGNAL_VERSION"]  # re-exported from core.wire

#: Signal values: numbers, text (program names, states), booleans, or None for "no value".
Value = float | int | str | bool | None


class Quality(StrEnum):
    """OPC UA-style quality of one sample. ``no_data`` is not "machine stopped"."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"
    NO_DATA = "no_data"


class SignalName(StrEnum):
    """Canonical signal names. Plants may add their own; these are the ones rules know."""

    RUN_STATE = "run_state"  # executing / idle / stopped / interrupted / ... (text)
    OPERATION_MODE = "operation_mode"  # processing / setup / maintenance / none (text)
    PROGRAM = "program"
    PART_COUNT = "part_count"
    PART_COUNT_GOOD = "part_count_good"
    PART_COUNT_BAD = "part_count_bad"
    CYCLE_START = "cycle_start"
    CYCLE_END = "cycle_end"
    CYCLE_TIME = "cycle_time"  # seconds
    TOOL_NUMBER = "tool_number"
    TOOL_LIFE = "tool_life"  # subject = tool; value = counter; attrs warning/limit/counting
    TOOL_CHANGE = "tool_change"
    PALLET_ID = "pallet_id"
    PALLET_CHANGE = "pallet_change"
    SPINDLE_LOAD = "spindle_load"  # percent
    FEED_OVERRIDE = "feed_override"  # percent
    ALARM = "alarm"  # value = code; attrs text, severity
    MACHINING_EVENT = "machining_event"  # tool-tracker event; attrs pallet, cmd, counter


class DecodeError(RejectedError):
    """A stream entry or payload that cannot become a message. ``reason`` says why."""

    reason = "decode"


def _text(fields: dict[str, str], key: str) -> str:
    try:
        return fields[key]
    except KeyError:
        raise DecodeError(f"field {key!r} is missing", reason="missing_field") from None


def _timestamp(fields: dict[str, str], key: str) -> float:
    raw = _text(fields, key)
    try:
        ts = float(raw)
    except ValueError:
        raise DecodeError(f"field {key!r} is not a timestamp", reason="bad_field") from None
    if not math.isfinite(ts):
        raise DecodeError(f"field {key!r} is not finite", reason="bad_field")
    return ts


#: Quality by its wire text: a dict lookup instead of the enum's (slower) constructor.
_QUALITIES: Final = {q.value: q for q in Quality}
#: Decoded ``x`` and ``a`` fields by their text. Entries repeat the same few values (run
#: states, programs, counters, loads, a tool's attrs) many times a second, and a lookup is
#: a fraction of ``json.loads``. Values are immutable scalars; attrs are copied on the way
#: out. Each cache is emptied when it reaches :data:`_CACHE_MAX` (bounded memory).
_VALUES: dict[str, Value] = {}
_ATTRS: dict[str, dict[str, str]] = {}
_CACHE_MAX: Final = 8192
#: Where ``Signal.from_flat`` finds each value in the collector's layout (core.wire).
_AT_M, _AT_N, _AT_X, _AT_Q, _AT_TS, _AT_RTS, _AT_S = (FLAT_AT[k] for k in (M, N, X, Q, TS, RTS, S))
_NO_ATTRS: Final[dict[str, str]] = {}
_MISS: Final[Any] = object()  # Any: a stand-in for "not cached" among values


def _value(raw: str) -> Value:
    """The ``x`` field's value (not cached yet): JSON, a scalar."""
    try:
        value = json.loads(raw)
    except ValueError:
        raise DecodeError(f"field {X!r} is not JSON", reason="bad_field") from None
    if isinstance(value, list | dict):
        raise DecodeError(f"field {X!r} is not a scalar", reason="bad_field")
    if len(_VALUES) >= _CACHE_MAX:
        _VALUES.clear()
    _VALUES[raw] = value
    return value  # type: ignore[no-any-return]  # json.loads is Any; checked scalar above


def _attrs(raw: str) -> dict[str, str]:
    """The ``a`` field's attrs (not cached yet): a JSON object, values as text.

    Returns the cached dict: callers copy it. orjson parses the collector's attrs (an
    object of strings, as ``to_fields`` writes them) in a fifth of ``json``'s time;
    anything else (what orjson refuses, such as NaN or lone surrogates, and any value not
    a string, since orjson makes integers beyond 64 bits floats) is parsed by ``json``,
    whose verdict stands: the result is ``json``'s in every case.
    """
    try:
        raw_attrs = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raw_attrs = None
    if not (isinstance(raw_attrs, dict) and all(type(v) is str for v in raw_attrs.values())):
        try:
            raw_attrs = json.loads(raw)
        except ValueError:
            raise DecodeError(f"field {A!r} is not JSON", reason="bad_field") from None
    if not isinstance(raw_attrs, dict):
        raise DecodeError(f"field {A!r} is not an object", reason="bad_field")
    attrs = {str(k): str(v) for k, v in raw_attrs.items()}
    if len(_ATTRS) >= _CACHE_MAX:
        _ATTRS.clear()
    _ATTRS[raw] = attrs
    return attrs


@dataclass(frozen=True, slots=True)
class Signal:
    """One sample of one signal of one machine.

    Attributes:
        machine: configured machine id.
        name: canonical signal name (see :class:`SignalName`) or a plant's own.
        value: the sample; ``None`` when the source had no value (see ``quality``).
        quality: good, uncertain, bad, or no_data.
        source_ts: when the machine or server stamped it (Unix seconds, UTC).
        receive_ts: when the collector received it (Unix seconds, UTC).
        subject: what the signal is about within the machine (tool ``T12``, pallet ``2``).
        attrs: small extra facts (alarm text, tool-life limit), strings only.
    """

    machine: str
    name: str
    value: Value
    quality: Quality = Quality.GOOD
    source_ts: float = 0.0
    receive_ts: float = 0.0
    subject: str = ""
    attrs: dict[str, str] = field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        """The stream entry's fields (all strings; the value JSON-encoded)."""
        return signal_fields(
            self.machine,
            self.name,
            json.dumps(self.value, allow_nan=False),
            self.quality.value,
            repr(self.source_ts),
            repr(self.receive_ts),
            self.subject,
            json.dumps(self.attrs, separators=(",", ":")) if self.attrs else "",
        )

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Signal:
        """Decode a stream entry. Raises :class:`DecodeError` with a reason.

        The checks, in this order, and their errors are the specification; the code is
        written for speed (it runs for every entry a rules worker reads): repeated ``x``
        and ``a`` texts come from caches, and missing fields are caught where they are
        read. ``tests/rules/test_decode.py`` holds it to a plain rendering of the checks.
        """
        version = fields.get(V)
        if version != SIGNAL_V:
            raise DecodeError(f"unknown signal version {version!r}", reason="unknown_version")
        try:
            raw = fields[X]
        except KeyError:
            raise DecodeError(f"field {X!r} is missing", reason="missing_field") from None
        value = _VALUES.get(raw, _MISS)
        if value is _MISS:
            value = _value(raw)
        try:
            quality = _QUALITIES.get(fields[Q])
        except KeyError:
            raise DecodeError(f"field {Q!r} is missing", reason="missing_field") from None
        if quality is None:
            raise DecodeError(f"field {Q!r} is not a quality", reason="bad_field")
        raw_attrs = fields.get(A)
        if raw_attrs is None:
            attrs: dict[str, str] = {}
        else:
            cached = _ATTRS.get(raw_attrs)
            attrs = dict(_attrs(raw_attrs) if cached is None else cached)
        try:
            machine = fields[M]
            name = fields[N]
        except KeyError as exc:
            raise DecodeError(f"field {exc.args[0]!r} is missing", reason="missing_field") from None
        if not machine or not name:
            raise DecodeError("machine and name must not be empty", reason="bad_field")
        try:
            source_ts = float(fields[TS])
            receive_ts = float(fields[RTS])
        except (KeyError, ValueError):
            # The slow path says which field and why.
            source_ts = _timestamp(fields, TS)
            receive_ts = _timestamp(fields, RTS)
        if not (math.isfinite(source_ts) and math.isfinite(receive_ts)):
            source_ts = _timestamp(fields, TS)
            receive_ts = _timestamp(fields, RTS)
        return cls(machine, name, value, quality, source_ts, receive_ts, fields.get(S, ""), attrs)

    @classmethod
    def from_flat(cls, flat: list[str]) -> Signal:
        """:meth:`from_fields` for the fields as Redis sends them: ``[k1, v1, k2, v2, ...]``.

        Entries the collector writes have one layout (``v m n x q ts rts``, then an
        optional ``s`` and an optional ``a``, ``core.wire``); for it the values are read by
        position, without building a dict whose seven fresh keys would each be hashed (a
        rules worker does it per entry: docs/decisions/0308-rules-hot-path.md). Any other
        layout, and any entry a check refuses, goes through
        :meth:`from_fields`, so the result and every error are the same
        (``tests/rules/test_decode.py``).
        """
        n = len(flat)
        tail = flat[FLAT_REQUIRED_LEN::2]
        if (
            (n == FLAT_REQUIRED_LEN or (n <= FLAT_MAX_LEN and tail in FLAT_TAILS and n % 2 == 0))
            and flat[0:FLAT_REQUIRED_LEN:2] == FLAT_REQUIRED_KEYS
            and flat[1] == SIGNAL_V
        ):
            machine, name, raw = flat[_AT_M], flat[_AT_N], flat[_AT_X]
            value = _VALUES.get(raw, _MISS)
            if value is _MISS:
                value = _value(raw)  # from_fields checks x right after v: the same error
            quality = _QUALITIES.get(flat[_AT_Q])
            if quality is not None and machine and name:
                try:
                    source_ts = float(flat[_AT_TS])
                    receive_ts = float(flat[_AT_RTS])
                except ValueError:
                    pass
                else:
                    if source_ts - source_ts == 0.0 and receive_ts - receive_ts == 0.0:
                        subject = flat[_AT_S] if tail and tail[0] == S else ""
                        attrs: dict[str, str] | None = _NO_ATTRS
                        if tail and tail[-1] == A:
                            attrs = _ATTRS.get(flat[n - 1])
                            if attrs is None:
                                try:  # noqa: SIM105 - no context manager a cache miss
                                    attrs = _attrs(flat[n - 1])
                                except DecodeError:
                                    pass  # from_fields raises it, after its earlier checks
                        if attrs is not None:
                            return _decoded(
                                machine, name, value, quality, source_ts, receive_ts, subject,
                                dict(attrs) if attrs else {},
                            )  # fmt: skip
        it = iter(flat)
        return cls.from_fields(dict(zip(it, it, strict=False)))


_new = object.__new__
(_SET_M, _SET_N, _SET_X, _SET_Q, _SET_TS, _SET_RTS, _SET_S, _SET_A) = (
    getattr(Signal, f).__set__
    for f in ("machine", "name", "value", "quality", "source_ts", "receive_ts", "subject", "attrs")
)


def _decoded(  # noqa: PLR0917 - a Signal's eight fields, in order
    machine: str,
    name: str,
    value: Value,
    quality: Quality,
    source_ts: float,
    receive_ts: float,
    subject: str,
    attrs: dict[str, str],
) -> Signal:
    """``Signal(...)`` for values :meth:`Signal.from_flat` has checked, set through the slots'
    own descriptors: the frozen dataclass's ``__init__`` goes through the slower
    ``object.__setattr__`` per field, and a rules worker builds one per entry. The same
    object: ``tests/rules/test_decode.py`` compares reprs."""
    sig: Signal = _new(Signal)
    _SET_M(sig, machine)
    _SET_N(sig, name)
    _SET_X(sig, value)
    _SET_Q(sig, quality)
    _SET_TS(sig, source_ts)
    _SET_RTS(sig, receive_ts)
    _SET_S(sig, subject)
    _SET_A(sig, attrs)
    return sig


class ReportState(StrEnum):
    """A report request's life, shown to the requester like a print queue."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class EpisodeState(StrEnum):
    """Alertmanager-style states of an anomaly episode."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class TicketState(StrEnum):
    """The outbox row's life. ``dead`` means Plex rejected it: replayable by an operator."""

    PENDING = "pending"  # waiting to be sent (or to be retried at next_attempt_at)
    SENDING = "sending"  # claimed by a sender; ambiguous if the sender dies here
    FILED = "filed"  # Plex has it; plex_number known
    DEAD = "dead"  # rejected by Plex or out of attempts; reason recorded
    CANCELLED = "cancelled"  # withdrawn by an operator before filing
    CLOSED = "closed"  # closed in Plex (status follow-up)


class Severity(StrEnum):
    """Severities the plants used."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ReportRequest(BaseModel):
    """A request on the report queue (the design's ``TB_Queue``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    id: str = Field(min_length=1, max_length=64)
    kind: str = Field(min_length=1, max_length=32, description="Report kind, e.g. tb.")
    params: dict[str, Any] = Field(default_factory=dict)
    requester: str = Field(default="", max_length=128)
    requested_at: datetime

    def to_fields(self) -> dict[str, str]:
        return {V: REPORT_REQUEST_V, BODY: self.model_dump_json()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> ReportRequest:
        if fields.get(V) != REPORT_REQUEST_V:
            raise DecodeError(
                f"unknown report request version {fields.get(V)!r}", reason="unknown_version"
            )
        try:
            return cls.model_validate_json(_text(fields, BODY))
        except ValueError as exc:
            raise DecodeError(f"bad report request: {exc}", reason="bad_field") from exc

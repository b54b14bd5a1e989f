"""MQTT topics and payloads → signals: pure functions, no network.

A :class:`TopicPattern` turns ``plant/{pcn}/{machine}/{signal}`` into the subscription
filter ``plant/+/+/+`` and a matcher that captures the named levels. A
:class:`MessageDecoder` maps one message onto the configured machines' signals, or raises
:class:`collector.errors.PayloadRejectedError` with a reason (the reader then
dead-letters it). The plants' formats (DOMAIN.md section 2) are configuration of the
generic JSON mapping: field paths, templates for subjects and attributes, a machine
named by a payload field (id, ``Workcenter_Code`` or ``Workcenter_Key``) and a local
``TransDate`` read in the plant's time zone.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from collector.convert import convert
from collector.errors import PayloadRejectedError
from collector.rows import Row, signal_row
from core.config.collector import SIGNAL_PATTERN, MqttField, MqttSource, MqttTopic
from core.config.machines import Machine
from core.model import Quality, Signal

_VAR = re.compile(r"\{([A-Za-z0-9_.]+)\}")
_SIGNAL = re.compile(SIGNAL_PATTERN)
#: Topics whose pattern match is remembered (a plant has hundreds, not millions).
ROUTE_CACHE_MAX = 100_000


class TopicPattern:
    """``a/{machine}/+/#`` → filter ``a/+/+/#`` and a matcher of the named levels."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        levels = pattern.split("/")
        self.filter = "/".join("+" if level.startswith("{") else level for level in levels)
        self.names = [level[1:-1] for level in levels if level.startswith("{")]
        parts = []
        for level in levels:
            if level.startswith("{"):
                parts.append(f"(?P<{level[1:-1]}>[^/]*)")
            elif level == "+":
                parts.append("[^/]*")
            elif level == "#":
                parts.append(".*")
            else:
                parts.append(re.escape(level))
        regex = "/".join(parts)
        if levels[-1] == "#":
            regex = regex[: -len("/.*")] + "(?:/.*)?" if len(levels) > 1 else ".*"
        self._regex = re.compile(f"^{regex}$")

    def match(self, topic: str) -> dict[str, str] | None:
        m = self._regex.match(topic)
        return None if m is None else m.groupdict()


def _reject_constant(name: str) -> Any:
    raise PayloadRejectedError(f"{name} is not a finite number", reason="not_finite")


#: A finite float's JSON text (what ``json.dumps`` writes for it).
_REPR = float.__repr__
#: orjson turns integers beyond 64 bits into floats at least this large.
_HUGE = 2.0**63
#: One decoder for every message (``json.loads`` with an argument builds one per call).
_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def float_texts(values: tuple[Any, ...]) -> list[str]:
    """``repr`` of each of ``values`` (finite floats; TypeError if one is not a float).

    ``float.__repr__`` was most of a snapshot message's decoding (ten values: 5.7 us of
    7). orjson writes the same shortest round-trip digits for a whole tuple in one call
    (0.3 us), and the same text as ``repr`` except in two forms, which take ``repr``: an
    exponent (``1e-07`` against ``1e-7``) and the five decades below 1e-4 (``1e-05``
    against ``0.00001``). Integers and booleans write no ``.`` and strings a quote: they
    take ``repr`` too, which refuses them, as before. tests/collector/test_rows.py holds
    the two equal.
    """
    text = orjson.dumps(values)
    if (
        text.count(b".") == len(values)
        and b"e" not in text
        and b"0.0000" not in text
        and b'"' not in text
    ):
        return text[1:-1].decode().split(",")
    return list(map(_REPR, values))


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise PayloadRejectedError("payload is not UTF-8 text", reason="not_json") from None


def _plain_value(text: str) -> Any:
    """A plain payload (``format: value``): a number, true/false, or the text."""
    text = text.strip()
    if not text:
        raise PayloadRejectedError("payload is empty", reason="bad_value")
    lowered = text.lower()
    if lowered in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
        raise PayloadRejectedError("value is not finite", reason="not_finite")
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(lowered, text)


def _huge(data: Any) -> bool:
    """Whether parsed JSON holds a float of magnitude 2**63 or more (see _parse)."""
    t = type(data)
    if t is dict:
        items = data.values()
    elif t is list:
        items = data
    else:
        return t is float and not -_HUGE < data < _HUGE
    for v in items:
        t = type(v)
        if t is float:
            if not -_HUGE < v < _HUGE:
                return True
        elif (t is dict or t is list) and _huge(v):
            return True
    return False


def _json(text: str) -> Any:
    """Python's json, with the reasons the dead letters carry."""
    try:
        return _JSON.decode(text)
    except ValueError as exc:
        raise PayloadRejectedError(f"payload is not JSON: {exc}", reason="not_json") from None
    except RecursionError:
        raise PayloadRejectedError("payload nests too deep", reason="not_json") from None


def _lookup(data: Any, path: str) -> Any:
    """Dotted path into parsed JSON (``a.b.0.c``); KeyError when absent."""
    if not path:
        return data
    for part in path.split("."):
        if isinstance(data, dict):
            data = data[part]
        elif isinstance(data, list) and part.lstrip("-").isdigit():
            try:
                data = data[int(part)]
            except IndexError:
                raise KeyError(part) from None
        else:
            raise KeyError(part)
    return data


class MessageDecoder:
    """Decodes messages of one MQTT source (see the module docstring)."""

    def __init__(
        self, source: MqttSource, machines: Sequence[Machine], timezone: str = "UTC"
    ) -> None:
        self.source = source
        self.tz = ZoneInfo(timezone)
        self.topics = [(TopicPattern(t.pattern), t) for t in source.topics]
        self._machine: dict[str, str] = {}
        # Ids first, so that an id wins over another machine's workcenter code.
        for m in machines:
            self._machine.setdefault(str(m.workcenter_key), m.id)
            self._machine.setdefault(m.workcenter_code, m.id)
        for m in machines:
            self._machine[m.id] = m.id
        # Topic → (spec, topic variables): a plant has a bounded set of topics, and the
        # regular expressions were a good part of a message's cost. Bounded anyway.
        self._routes: dict[str, tuple[MqttTopic, dict[str, str], str]] = {}
        # Per topic spec and field: the dict key when the path is one level, whether the
        # value can be taken as it is (see decode_rows).
        self._plans = {id(t): _Plan(t) for _, t in self.topics}
        self._has_paths = {id(t): any(f.path for f in t.fields) for _, t in self.topics}

    @property
    def filters(self) -> list[str]:
        """Subscription filters, without duplicates, in configuration order."""
        return list(dict.fromkeys(p.filter for p, _ in self.topics))

    def decode(self, topic: str, payload: bytes, receive_ts: float) -> list[Signal]:
        """One message → its signals. Raises :class:`PayloadRejectedError`."""
        spec, tvars, _ = self._route(topic, payload)
        data = self._parse(spec, payload)
        machine = self._machine_of(spec, tvars, data)
        source_ts = self._timestamp(spec, data) if spec.timestamp_field else receive_ts
        out = []
        for f in spec.fields:
            try:
                raw = _lookup(data, f.path)
            except KeyError:
                if f.optional:
                    continue
                raise PayloadRejectedError(
                    f"field {f.path!r} is missing", reason="missing_field"
                ) from None
            out.append(self._signal(f, machine, raw, tvars, data, source_ts, receive_ts))
        return out

    def decode_rows(self, topic: str, payload: bytes, receive_ts: float) -> tuple[str, list[Row]]:
        """One message → its machine and its signals as rows (:mod:`collector.rows`).

        The same entries as ``[s.to_fields() for s in decode(...)]`` (a property test
        holds them equal), without a :class:`Signal` per value: the MQTT reader's hot
        path. Plain fields (a fixed name; no subject, attributes, map or scaling) holding
        finite floats, or ints read as they are, go into groups; any other field goes
        through :meth:`_signal` into a full row. Raises :class:`PayloadRejectedError`.
        """
        spec, tvars, topic_machine = self._route(topic, payload)
        plan = self._plans[id(spec)]
        data = self._parse(spec, payload)
        by_key = type(data) is dict
        machine = topic_machine or self._machine_of(spec, tvars, data)
        source_ts = receive_ts
        if spec.timestamp_field:
            # Epoch seconds as a finite float, the common case, read directly.
            raw_ts: Any = data.get(plan.ts_key) if by_key and plan.ts_key else None
            is_float = type(raw_ts) is float and raw_ts - raw_ts == 0.0
            source_ts = raw_ts if is_float else self._timestamp(spec, data)
        ts, rts = repr(source_ts), repr(receive_ts)
        if plan.getter is not None and by_key:
            # A snapshot of plain float fields, all present and finite (their sum is):
            # one group, its values read in C. Anything else takes the loop below.
            try:
                values = plan.getter(data)
                total = sum(values)
                if total - total == 0.0:
                    return machine, [[machine, ts, rts, plan.names, float_texts(values)]]
            except (KeyError, TypeError):
                pass
        rows: list[Row] = []
        names: list[str] = []
        xs: list[str] = []
        for f, key, plain, as_is in plan.fields:
            try:
                raw = data[key] if by_key and key else _lookup(data, f.path)
            except KeyError:
                if f.optional:
                    continue
                raise PayloadRejectedError(
                    f"field {f.path!r} is missing", reason="missing_field"
                ) from None
            t = type(raw)
            if plain and t is float and raw - raw == 0.0:
                names.append(f.signal)
                xs.append(_REPR(raw))
            elif as_is and t is int:
                names.append(f.signal)
                xs.append(int.__repr__(raw))
            else:
                if names:  # keep the order: the group so far, then this signal
                    rows.append([machine, ts, rts, names, xs])
                    names, xs = [], []
                s = self._signal(f, machine, raw, tvars, data, source_ts, receive_ts)
                rows.append(signal_row(s))
        if names:
            rows.append([machine, ts, rts, names, xs])
        return machine, rows

    def _route(self, topic: str, payload: bytes) -> tuple[MqttTopic, dict[str, str], str]:
        """The topic's spec, its variables, and its machine when the topic alone names a
        known one (else "": :meth:`_machine_of` decides after parsing, with its errors).
        """
        if len(payload) > self.source.max_payload_bytes:
            raise PayloadRejectedError(
                f"payload of {len(payload)} bytes is over {self.source.max_payload_bytes}",
                reason="too_large",
            )
        route = self._routes.get(topic)
        if route is not None:
            return route
        for pattern, spec in self.topics:
            tvars = pattern.match(topic)
            if tvars is not None:
                machine = spec.machine
                if not machine and not spec.machine_field:
                    name = tvars.get("machine") or tvars.get("workcenter") or ""
                    machine = self._machine.get(name, "")
                if len(self._routes) < ROUTE_CACHE_MAX:
                    self._routes[topic] = (spec, tvars, machine)
                return spec, tvars, machine
        raise PayloadRejectedError("no topic pattern matches", reason="unknown_topic")

    def _parse(self, spec: MqttTopic, payload: bytes) -> Any:
        if spec.format == "value":
            return _plain_value(_utf8(payload))
        # orjson takes a fifth of json's time, and parses what json parses the same way,
        # except integers beyond 64 bits (it makes them floats of 2**63 or more: those
        # payloads go to json) and what it refuses (NaN, infinities, lone surrogates, a
        # BOM, deep nesting), which json then parses or rejects exactly as before.
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = _json(_utf8(payload))
        else:
            if _huge(data):
                data = _json(_utf8(payload))
        if self._has_paths[id(spec)] and not isinstance(data, dict | list):
            raise PayloadRejectedError("payload is not a JSON object", reason="not_object")
        return data

    def _machine_of(self, spec: MqttTopic, tvars: dict[str, str], data: Any) -> str:
        if spec.machine:
            return spec.machine
        if spec.machine_field:
            try:
                raw = _lookup(data, spec.machine_field)
            except KeyError:
                raise PayloadRejectedError(
                    f"field {spec.machine_field!r} is missing", reason="missing_field"
                ) from None
            if isinstance(raw, float):
                # 1e400 parses as infinity: a machine name no payload can have.
                if not math.isfinite(raw):
                    raise PayloadRejectedError(
                        f"field {spec.machine_field!r} is not finite", reason="not_finite"
                    )
                name = str(int(raw)) if raw.is_integer() else str(raw)
            else:
                name = str(raw)
        else:
            name = tvars.get("machine") or tvars.get("workcenter") or ""
        machine = self._machine.get(name)
        if machine is None:
            raise PayloadRejectedError(f"unknown machine {name[:64]!r}", reason="unknown_machine")
        return machine

    def _timestamp(self, spec: MqttTopic, data: Any) -> float:
        try:
            raw = _lookup(data, spec.timestamp_field)
        except KeyError:
            raise PayloadRejectedError(
                f"field {spec.timestamp_field!r} is missing", reason="missing_field"
            ) from None
        try:
            if spec.timestamp_format in ("epoch_s", "epoch_ms"):
                if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                    raise ValueError("not a number")
                ts = float(raw) / (1000.0 if spec.timestamp_format == "epoch_ms" else 1.0)
            else:
                if not isinstance(raw, str):
                    raise ValueError("not text")
                if spec.timestamp_format == "local":
                    dt = datetime.strptime(raw.strip(), "%Y-%m-%d %H:%M:%S")
                else:
                    dt = datetime.fromisoformat(raw.strip())
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=self.tz)
                ts = dt.timestamp()
        except (ValueError, OverflowError) as exc:
            raise PayloadRejectedError(
                f"field {spec.timestamp_field!r} is not a {spec.timestamp_format} time: {exc}",
                reason="bad_timestamp",
            ) from None
        if not math.isfinite(ts):
            raise PayloadRejectedError("timestamp is not finite", reason="bad_timestamp")
        return ts

    def _signal(  # noqa: PLR0917 - one private call site, arguments in the order it has them
        self,
        f: MqttField,
        machine: str,
        raw: Any,
        tvars: dict[str, str],
        data: Any,
        source_ts: float,
        receive_ts: float,
    ) -> Signal:
        if "{" in f.signal:
            name = _render(f.signal, tvars, data)
            if not _SIGNAL.match(name):
                raise PayloadRejectedError(
                    f"signal name {name[:64]!r} is not valid", reason="bad_value"
                )
        else:
            name = f.signal  # a fixed name, checked by the config model
        return Signal(
            machine=machine,
            name=name,
            value=convert(raw, f),
            quality=Quality.GOOD if raw is not None else Quality.NO_DATA,
            source_ts=source_ts,
            receive_ts=receive_ts,
            subject=_render(f.subject, tvars, data) if f.subject else "",
            attrs={k: _render(v, tvars, data) for k, v in f.attrs.items()} if f.attrs else {},
        )


class _Plan:
    """How :meth:`MessageDecoder.decode_rows` reads one topic spec's fields."""

    def __init__(self, spec: MqttTopic) -> None:
        fields = spec.fields
        #: The timestamp's dict key when it is one level deep in epoch seconds.
        self.ts_key = ""
        if spec.timestamp_format == "epoch_s" and "." not in spec.timestamp_field:
            self.ts_key = spec.timestamp_field
        #: (field, dict key or "", plain, ints as they are) per field.
        self.fields: list[tuple[MqttField, str, bool, bool]] = []
        for f in fields:
            plain = (
                "{" not in f.signal
                and not f.subject
                and not f.attrs
                and not f.map
                and f.type in ("auto", "float")
                and f.scale == 1.0
                and f.offset == 0.0
            )
            key = f.path if f.path and "." not in f.path else ""
            self.fields.append((f, key, plain, plain and f.type == "auto"))
        #: Every field plain, required, one level deep: the values in one call.
        self.getter: Callable[[Any], tuple[Any, ...]] | None = None
        self.names = [f.signal for f in fields]
        if len(fields) > 1 and all(
            plain and key and not f.optional for f, key, plain, _ in self.fields
        ):
            self.getter = operator.itemgetter(*(key for _, key, _, _ in self.fields))


def _render(template: str, tvars: dict[str, str], data: Any) -> str:
    """``T{Tool_Var}`` with topic variables first, then payload fields."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in tvars:
            return tvars[name]
        try:
            value = _lookup(data, name)
        except KeyError:
            raise PayloadRejectedError(
                f"field {name!r} is missing", reason="missing_field"
            ) from None
        if isinstance(value, dict | list):
            raise PayloadRejectedError(f"field {name!r} is not a scalar", reason="bad_value")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    return _VAR.sub(one, template)

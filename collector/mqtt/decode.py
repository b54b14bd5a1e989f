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
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from collector.convert import convert
from collector.errors import PayloadRejectedError
from core.config.collector import SIGNAL_PATTERN, MqttField, MqttSource, MqttTopic
from core.config.machines import Machine
from core.model import Quality, Signal

_VAR = re.compile(r"\{([A-Za-z0-9_.]+)\}")
_SIGNAL = re.compile(SIGNAL_PATTERN)


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

    @property
    def filters(self) -> list[str]:
        """Subscription filters, without duplicates, in configuration order."""
        return list(dict.fromkeys(p.filter for p, _ in self.topics))

    def decode(self, topic: str, payload: bytes, receive_ts: float) -> list[Signal]:
        """One message → its signals. Raises :class:`PayloadRejectedError`."""
        if len(payload) > self.source.max_payload_bytes:
            raise PayloadRejectedError(
                f"payload of {len(payload)} bytes is over {self.source.max_payload_bytes}",
                reason="too_large",
            )
        for pattern, spec in self.topics:
            tvars = pattern.match(topic)
            if tvars is not None:
                return self._decode(spec, tvars, payload, receive_ts)
        raise PayloadRejectedError("no topic pattern matches", reason="unknown_topic")

    def _decode(
        self, spec: MqttTopic, tvars: dict[str, str], payload: bytes, receive_ts: float
    ) -> list[Signal]:
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

    def _parse(self, spec: MqttTopic, payload: bytes) -> Any:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadRejectedError("payload is not UTF-8 text", reason="not_json") from None
        if spec.format == "value":
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
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise PayloadRejectedError(f"payload is not JSON: {exc}", reason="not_json") from None
        except RecursionError:
            raise PayloadRejectedError("payload nests too deep", reason="not_json") from None
        if any(f.path for f in spec.fields) and not isinstance(data, dict | list):
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
            name = str(raw) if not isinstance(raw, float) else str(int(raw))
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

"""Observations -> signals, by the plant's mapping resolved against the agent's probe.

The mapping is resolved once per probe (:meth:`Mapping.resolve`): a configured ``id``
names one data item; a ``type`` (with ``sub_type`` and ``name``) every item of that type
in each mapped device; with ``conditions`` every CONDITION item of a mapped device not
otherwise mapped becomes an alarm. Then, per observation:

- an item the probe does not know is refused (``unknown_item``): the agent's model
  changed under the reader, or the document is not the agent's; the reader dead-letters
  it and goes on with the rest of the document;
- an item the probe knows but nothing maps is skipped (a probe has hundreds);
- ``UNAVAILABLE`` becomes value None with quality ``no_data`` (the agent has no value:
  not "machine down");
- a value is converted as configured (``auto``: SAMPLE items as numbers, EVENT items as
  text after ``map``); one that does not convert is refused (``bad_value``);
- a condition (``<Normal>``, ``<Warning>``, ``<Fault>``, ``<Unavailable>``) becomes an
  alarm signal: value the ``nativeCode`` (else the item's type), attrs ``active``
  (``true`` for Warning and Fault: a Normal clears), ``level``, ``text``,
  ``native_severity``, ``qualifier``, like the OPC UA conditions' ``active``.

Every signal carries attrs ``item`` (the dataItemId) and ``seq`` (the agent's sequence
number), so a stream entry can be traced back to the agent's buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from collector.errors import PayloadRejectedError
from collector.mtconnect.document import UNAVAILABLE, DataItem, Observation, timestamp
from core.config.collector_mtconnect import MtconnectItem, MtconnectSource
from core.model import Quality, Signal, Value

#: Condition levels that mean "an alarm stands".
_ACTIVE = {"Warning", "Fault"}


@dataclass(frozen=True, slots=True)
class Target:
    """Where one data item's observations go."""

    machine: str
    signal: str
    subject: str
    category: str
    type: str
    rule: MtconnectItem | None  # None: an alarm of ``conditions``


@dataclass(frozen=True, slots=True)
class Rejected:
    """One observation that did not become a signal, with its dead-letter reason."""

    reason: str
    error: str
    where: str
    payload: bytes


def _matches(rule: MtconnectItem, item: DataItem) -> bool:
    if rule.id:
        return rule.id == item.id
    return (
        rule.type == item.type
        and (not rule.sub_type or rule.sub_type == item.sub_type)
        and (not rule.name or rule.name == item.name)
    )


class Mapping:
    """One source's mapping resolved against one probe (see the module docstring)."""

    def __init__(self, source: MtconnectSource, model: dict[str, DataItem]) -> None:
        self.source = source
        self.model = model
        self.targets: dict[str, Target] = {}
        #: Configured devices and item ids the probe does not have (logged by the reader).
        self.missing: list[str] = []
        machines: dict[str, str] = {}
        for d in source.devices:
            machines[d.device] = d.machine
        seen_devices = {i.device for i in model.values()} | {i.uuid for i in model.values()}
        self.missing += [
            f"device {d.device}" for d in source.devices if d.device not in seen_devices
        ]
        ids = set(model)
        self.missing += [f"item {r.id}" for r in source.items if r.id and r.id not in ids]
        for item in model.values():
            machine = machines.get(item.device) or machines.get(item.uuid)
            if machine is None:
                continue
            rule = next((r for r in source.items if _matches(r, item)), None)
            if rule is not None:
                self.targets[item.id] = Target(
                    machine, rule.signal, rule.subject, item.category, item.type, rule
                )
            elif source.conditions and item.category == "CONDITION":
                self.targets[item.id] = Target(
                    machine, source.alarm_signal, "", item.category, item.type, None
                )

    def decode(
        self, observations: list[Observation], now: float
    ) -> tuple[list[Signal], list[Rejected]]:
        """The signals of ``observations`` and the ones refused (never raises)."""
        out: list[Signal] = []
        bad: list[Rejected] = []
        for o in observations:
            try:
                signal = self.signal(o, now)
            except PayloadRejectedError as exc:
                bad.append(Rejected(exc.reason, str(exc), f"{o.item_id}@{o.sequence}", o.raw))
                continue
            if signal is not None:
                out.append(signal)
        return out, bad

    def signal(self, o: Observation, now: float) -> Signal | None:
        """One observation's signal; None when nothing maps it; raises when refused."""
        target = self.targets.get(o.item_id)
        if target is None:
            if o.item_id not in self.model:
                raise PayloadRejectedError(
                    f"data item {o.item_id[:80]!r} is not in the agent's probe",
                    reason="unknown_item",
                )
            return None
        ts = timestamp(o.timestamp) if o.timestamp else now
        attrs = {"item": o.item_id, "seq": str(o.sequence)}
        if o.condition:
            return self._alarm(target, o, ts, now, attrs)
        if o.text == UNAVAILABLE:
            return Signal(
                target.machine, target.signal, None, Quality.NO_DATA, ts, now, target.subject, attrs
            )
        rule = target.rule
        text = rule.map.get(o.text, o.text) if rule is not None else o.text
        mode = rule.value if rule is not None else "text"
        value = _convert(text, mode, target.category)
        return Signal(
            target.machine, target.signal, value, Quality.GOOD, ts, now, target.subject, attrs
        )

    def _alarm(
        self, target: Target, o: Observation, ts: float, now: float, attrs: dict[str, str]
    ) -> Signal:
        if o.tag not in {"Normal", "Warning", "Fault", "Unavailable"}:
            raise PayloadRejectedError(
                f"condition level {o.tag[:40]!r} is not Normal, Warning, Fault or Unavailable",
                reason="bad_value",
            )
        attrs |= {
            "active": "true" if o.tag in _ACTIVE else "false",
            "level": o.tag.lower(),
            "text": o.text,
            "native_severity": o.attrs.get("nativeSeverity", ""),
            "qualifier": o.attrs.get("qualifier", ""),
        }
        if o.tag == "Unavailable":
            return Signal(
                target.machine, target.signal, None, Quality.NO_DATA, ts, now, target.subject, attrs
            )
        code = o.attrs.get("nativeCode") or target.type
        return Signal(
            target.machine, target.signal, code, Quality.GOOD, ts, now, target.subject, attrs
        )


def _convert(text: str, mode: str, category: str) -> Value:
    if mode == "text" or (mode == "auto" and category != "SAMPLE"):
        return text
    try:
        number = float(text)
    except ValueError as exc:
        raise PayloadRejectedError(
            f"value {text[:40]!r} is not a number", reason="bad_value"
        ) from exc
    if not math.isfinite(number):
        raise PayloadRejectedError(f"value {text[:40]!r} is not finite", reason="not_finite")
    if mode == "int":
        if not number.is_integer():
            raise PayloadRejectedError(f"value {text[:40]!r} is not whole", reason="bad_value")
        return int(number)
    return number

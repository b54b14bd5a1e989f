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

import json
import math
from dataclasses import dataclass

from collector.errors import PayloadRejectedError
from collector.mtconnect.document import UNAVAILABLE, DataItem, Observation, timestamp
from collector.rows import Row, rows_fields, value_json
from core.config.collector_mtconnect import MtconnectItem, MtconnectSource
from core.model import Signal, Value

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
        #: dataItemId -> the head of its attrs' JSON (see :meth:`rows`).
        self._heads: dict[str, str] = {}
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
        rows, bad = self.rows(observations, now)
        return [Signal.from_fields(f) for f in rows_fields(rows)], bad

    def rows(self, observations: list[Observation], now: float) -> tuple[list[Row], list[Rejected]]:
        """:meth:`decode` as rows (:mod:`collector.rows`), the sink's form (never raises).

        The reader's path: a :class:`Signal` per observation and its fields' encoding
        cost more than parsing the document; the attrs' JSON is written from a head
        encoded once per item (``{"item":"<id>","seq":"``) and the sequence's digits.
        """
        out: list[Row] = []
        bad: list[Rejected] = []
        rts = repr(now)
        for o in observations:
            try:
                row = self._row(o, rts)
            except PayloadRejectedError as exc:
                bad.append(Rejected(exc.reason, str(exc), f"{o.item_id}@{o.sequence}", o.raw))
                continue
            if row is not None:
                out.append(row)
        return out, bad

    def _head(self, item_id: str) -> str:
        head = json.dumps({"item": item_id, "seq": ""}, separators=(",", ":"))[:-2]
        self._heads[item_id] = head
        return head

    def _row(self, o: Observation, rts: str) -> Row | None:
        """One observation's row; None when nothing maps it; raises when refused."""
        target = self.targets.get(o.item_id)
        if target is None:
            if o.item_id not in self.model:
                raise PayloadRejectedError(
                    f"data item {o.item_id[:80]!r} is not in the agent's probe",
                    reason="unknown_item",
                )
            return None
        ts = repr(timestamp(o.timestamp)) if o.timestamp else rts
        if o.condition:
            return self._alarm(target, o, ts, rts)
        attrs = f'{self._heads.get(o.item_id) or self._head(o.item_id)}{o.sequence}"}}'
        if o.text == UNAVAILABLE:
            return [
                target.machine,
                target.signal,
                "null",
                "no_data",
                ts,
                rts,
                target.subject,
                attrs,
            ]
        rule = target.rule
        text = rule.map.get(o.text, o.text) if rule is not None else o.text
        mode = rule.value if rule is not None else "text"
        value = _convert(text, mode, target.category)
        x = value_json(value) or json.dumps(value)  # a number, else text
        return [target.machine, target.signal, x, "good", ts, rts, target.subject, attrs]

    def _alarm(self, target: Target, o: Observation, ts: str, rts: str) -> Row:
        if o.tag not in {"Normal", "Warning", "Fault", "Unavailable"}:
            raise PayloadRejectedError(
                f"condition level {o.tag[:40]!r} is not Normal, Warning, Fault or Unavailable",
                reason="bad_value",
            )
        attrs = {
            "item": o.item_id,
            "seq": str(o.sequence),
            "active": "true" if o.tag in _ACTIVE else "false",
            "level": o.tag.lower(),
            "text": o.text,
            "native_severity": o.attrs.get("nativeSeverity", ""),
            "qualifier": o.attrs.get("qualifier", ""),
        }
        a = json.dumps(attrs, separators=(",", ":"))
        if o.tag == "Unavailable":
            return [target.machine, target.signal, "null", "no_data", ts, rts, target.subject, a]
        code = o.attrs.get("nativeCode") or target.type
        return [target.machine, target.signal, json.dumps(code), "good", ts, rts, target.subject, a]


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

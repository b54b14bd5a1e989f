"""Parameters of each report kind: checked and normalized when a request is made.

The CLI, the scheduler and the web form all go through :func:`normalize`, so a request is
refused in the same words wherever it comes from, and identical requests normalize to the
same parameters (which is what coalescing compares).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.config import RepsysConfig
from runner.errors import BadRequest

#: Answers "which periods does this PCN's fiscal calendar have?"; ``None``: not loaded yet.
CalendarLookup = Callable[[int], set[int] | None]

#: Whole numbers as people type them in a plant: ASCII digits only. ``str.isdigit`` also
#: accepts superscripts and other scripts' digits ('²', '٣'), which ``int`` then refuses
#: or reads as something nobody typed.
_DIGITS = re.compile(r"[0-9]+")
#: Characters no parameter may hold: C0 and C1 controls (they reach command environments,
#: file names and mail subjects) and lone surrogates (no database or Redis can store them).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
#: Longest text a parameter value may be; every real parameter is far shorter.
VALUE_MAX = 256


def _digits(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


@dataclass(frozen=True)
class Normalized:
    """A request's checked parameters and its display name (``TB_202404_to_202404``)."""

    params: dict[str, Any]
    name: str

    def dedupe_key(self, kind: str) -> str:
        """``kind:sha256`` of the whole normalized parameters: identical requests coalesce,
        different ones never (a cut-off text key once merged requests that differed after
        its 256th character)."""
        text = json.dumps(self.params, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return f"{kind}:{hashlib.sha256(text.encode()).hexdigest()}"


def known_pcns(cfg: RepsysConfig) -> list[int]:
    """PCNs a trial balance may name: ``runner.tb.pcns``, else the machines' PCNs."""
    return sorted(set(cfg.runner.tb.pcns) or {m.pcn for m in cfg.machines})


def parse_period(value: Any, what: str) -> int:
    """``202401`` / ``"202401"`` -> 202401; anything else is a :class:`BadRequest`."""
    text = str(value).strip()
    if isinstance(value, bool) or not (_digits(text) and len(text) == 6):
        raise BadRequest(f"{what} {text!r} is not a period like 202401 (YYYYPP)")
    period = int(text)
    if not 1 <= period % 100 <= 13:
        raise BadRequest(f"{what} {period} is not a period: PP must be 01 to 13")
    return period


def _pcn_list(value: Any) -> list[int]:
    items = value.split(",") if isinstance(value, str) else value
    if isinstance(items, int):
        items = [items]
    if not isinstance(items, list | tuple):
        raise BadRequest("pcns must be a list of PCNs such as 123681,300758")
    out = []
    for item in items:
        text = str(item).strip()
        if isinstance(item, bool) or not _digits(text) or len(text) > 18:
            raise BadRequest(f"PCN {text!r} is not a number")
        out.append(int(text))
    return sorted(set(out))


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= VALUE_MAX and _UNSAFE.search(value) is None
    if isinstance(value, float):
        return math.isfinite(value)  # NaN and infinity are JSON no database stores
    return True


def _check_plain(params: Mapping[str, Any]) -> None:
    """Refuse names and values that no queue entry, table or command could carry."""
    for key, value in params.items():
        if not _plain(key):
            raise BadRequest(f"parameter name {str(key)[:32]!a} is not plain text")
        for item in value if isinstance(value, list | tuple) else [value]:
            if not _plain(item):
                raise BadRequest(
                    f"parameter {key!r}: {str(item)[:32]!a} holds a control or invalid "
                    f"character, is not a finite number or has more than {VALUE_MAX} characters"
                )


def _check_keys(kind: str, params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise BadRequest(
            f"unknown parameter {unknown[0]!r} for a {kind} report (allowed: {allowed_text})"
        )


def _calendar_check(period: int, pcn: int, calendars: CalendarLookup) -> None:
    periods = calendars(pcn)
    year = period // 100
    if periods is None:
        # Without the calendar only the adjustment period is in doubt: most fiscal years
        # have none, and accepting 202413 blind would fail the run minutes later.
        if period % 100 == 13:
            raise BadRequest(
                f"period {period} is not in the fiscal calendar of PCN {pcn}: period 13 is "
                "accepted only once the calendar is loaded (after a first trial balance)"
            )
        return
    if period not in periods:
        in_year = sorted(p % 100 for p in periods if p // 100 == year)
        have = f"periods {in_year[0]:02d} to {in_year[-1]:02d}" if in_year else "no periods"
        raise BadRequest(
            f"period {period} is not in the fiscal calendar of PCN {pcn} (fiscal {year} has {have})"
        )


def _tb(cfg: RepsysConfig, params: Mapping[str, Any], calendars: CalendarLookup) -> Normalized:
    _check_keys("tb", params, {"pcns", "start", "end"})
    known = known_pcns(cfg)
    if "pcns" in params and params["pcns"] not in (None, "", []):
        pcns = _pcn_list(params["pcns"])
    else:
        pcns = known
    if not pcns:
        raise BadRequest("no PCN given and none configured (runner.tb.pcns or machines)")
    for pcn in pcns:
        if pcn not in known:
            raise BadRequest(f"unknown PCN {pcn} (known: {', '.join(map(str, known))})")
    has_start = params.get("start") not in (None, "")
    has_end = params.get("end") not in (None, "")
    if has_start != has_end:
        raise BadRequest("give both a start and an end period, or neither (the latest window)")
    if not has_start:
        return Normalized({"pcns": pcns}, "TB_latest")
    start = parse_period(params["start"], "start period")
    end = parse_period(params["end"], "end period")
    if start > end:
        raise BadRequest(f"start period {start} is after end period {end}")
    for pcn in pcns:
        _calendar_check(start, pcn, calendars)
        _calendar_check(end, pcn, calendars)
    return Normalized({"pcns": pcns, "start": start, "end": end}, f"TB_{start}_to_{end}")


def _escalation(cfg: RepsysConfig, params: Mapping[str, Any]) -> Normalized:
    _check_keys("escalation", params, {"shift", "end", "day"})
    out: dict[str, Any] = {}
    shifts = [s.name for s in cfg.runner.escalation.shifts]
    if params.get("day"):
        # A whole plant day (every shift starting on it): OEE read from the history where
        # the streams no longer reach back.
        if params.get("shift") or params.get("end"):
            raise BadRequest("give a day, or a shift (and end), not both")
        try:
            day = date.fromisoformat(str(params["day"]))
        except ValueError:
            raise BadRequest(f"day {params['day']!r} is not an ISO date (YYYY-MM-DD)") from None
        return Normalized({"day": day.isoformat()}, f"Escalation_day_{day.isoformat()}")
    if params.get("shift"):
        shift = str(params["shift"])
        if shift not in shifts:
            raise BadRequest(f"unknown shift {shift!r} (known: {', '.join(shifts)})")
        out["shift"] = shift
    if params.get("end"):
        try:
            out["end"] = datetime.fromisoformat(str(params["end"])).isoformat()
        except ValueError:
            raise BadRequest(f"end {params['end']!r} is not an ISO date and time") from None
    name = "Escalation_" + out["shift"] if "shift" in out else "Escalation"
    return Normalized(out, name)


def _tool_check(params: Mapping[str, Any]) -> Normalized:
    _check_keys("tool_check", params, {"window_minutes"})
    window = params.get("window_minutes", 15)
    text = str(window).strip()
    if isinstance(window, bool) or not _digits(text) or not 1 <= int(text) <= 1440:
        raise BadRequest(f"window_minutes {window!r} must be a whole number from 1 to 1440")
    return Normalized({"window_minutes": int(text)}, "Tool_check")


def _other(kind: str, params: Mapping[str, Any]) -> Normalized:
    # A kind made only of external steps: parameters reach the commands' environment, so
    # they must be plain values.
    for key, value in params.items():
        if not isinstance(value, str | int | float | bool) or not str(key).isidentifier():
            raise BadRequest(f"parameter {key!r} of a {kind} report must be a plain value")
    return Normalized(dict(params), kind)


def normalize(
    cfg: RepsysConfig, kind: str, params: Mapping[str, Any], calendars: CalendarLookup
) -> Normalized:
    """Check ``params`` for ``kind``; raise :class:`BadRequest` with a clear message."""
    if kind not in cfg.runner.pipelines:
        known = ", ".join(sorted(cfg.runner.pipelines))
        raise BadRequest(f"unknown report kind {kind!r} (known: {known})")
    if not isinstance(params, Mapping):
        raise BadRequest("parameters must be a mapping of names to values")
    _check_plain(params)
    if kind == "tb":
        return _tb(cfg, params, calendars)
    if kind == "escalation":
        return _escalation(cfg, params)
    if kind == "tool_check":
        return _tool_check(params)
    return _other(kind, params)

"""Raw source values → signal values, the same way for every reader.

A :class:`core.config.collector.ValueMap` says how: an enum map (``{'1': executing}``),
then a type, a scale and an offset. Anything that cannot become a finite scalar raises
:class:`collector.errors.PayloadRejectedError` with reason ``bad_value`` or ``not_finite``.
"""

from __future__ import annotations

import math
from typing import Any

from collector.errors import PayloadRejectedError
from core.config.collector import ValueMap
from core.model import Value

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _key(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _parse(text: str) -> float | int:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return float(text.strip())
    except ValueError:
        raise PayloadRejectedError(f"{text[:40]!r} is not a number", reason="bad_value") from None


def _number(raw: Any, vm: ValueMap) -> float | int:
    if isinstance(raw, bool):
        raw = int(raw)
    if isinstance(raw, str):
        raw = _parse(raw)
    if not isinstance(raw, int | float):
        raise PayloadRejectedError(f"{type(raw).__name__} is not a number", reason="bad_value")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise PayloadRejectedError("value is not finite", reason="not_finite")
    try:
        value = raw if vm.scale == 1.0 and vm.offset == 0.0 else raw * vm.scale + vm.offset
        if isinstance(value, float) and not math.isfinite(value):
            raise PayloadRejectedError("scaled value is not finite", reason="not_finite")
        if vm.type == "int":
            return round(value)
        if vm.type == "float":
            return float(value)
    except OverflowError:
        raise PayloadRejectedError("value is out of range", reason="not_finite") from None
    return value


def _boolean(raw: Any) -> bool:
    text = _key(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PayloadRejectedError(f"{text[:40]!r} is not a boolean", reason="bad_value")


def convert(raw: Any, vm: ValueMap) -> Value:
    """Apply ``vm`` to ``raw``. Raises :class:`PayloadRejectedError`."""
    # The common case first, kept short: a finite float measurement taken as it is,
    # tens of thousands of times a second (raw - raw is 0.0 only for finite numbers).
    if (
        type(raw) is float
        and raw - raw == 0.0
        and not vm.map
        and vm.type in ("auto", "float")
        and vm.scale == 1.0
        and vm.offset == 0.0
    ):
        return raw
    return _convert(raw, vm)


def _convert(raw: Any, vm: ValueMap) -> Value:
    if raw is None:
        return None
    if vm.map:
        mapped = vm.map.get(_key(raw))
        if mapped is not None:
            return mapped
    if isinstance(raw, list | dict | tuple):
        raise PayloadRejectedError(f"a {type(raw).__name__} is not a scalar", reason="bad_value")
    if vm.type == "str":
        return raw if isinstance(raw, str) else _key(raw)
    if vm.type == "bool":
        return _boolean(raw)
    if vm.type == "auto" and isinstance(raw, bool | str):
        return raw
    return _number(raw, vm)

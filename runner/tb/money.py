"""Money in the trial balance: exact integer micros in, cents out, rounded in one place.

Amounts enter from drivers as whatever type the driver chose (``Decimal``, ``float``,
``int``, a decimal string; the SQLite ODBC driver hands a ``DECIMAL`` column over as
text, a ``REAL`` one as a double). Every one becomes an integer number of **micros**
(millionths of the currency unit) here, exactly:

- a string or ``Decimal`` by its decimal digits;
- a ``float`` through its shortest ``repr`` (the decimal the driver or database printed
  it from), never through ``value * 100``;
- digits beyond the sixth decimal (Plex keeps five; more is binary noise or a driver's
  artefact) are rounded half up, away from zero, at the sixth decimal.

Micros are carried through the whole recalculation as int64 and summed exactly. Only the
trial balance's lines are rounded to cents, by :func:`cents` / :func:`cents_array`
(half up, away from zero, so a debit and a credit of the same amount round alike); the
rounding rule of the report (totals rounded, the difference on an explicit rounding
line) is in ``runner/tb/transform.py`` and ``runner/README.md``.

Floats are converted a whole column at a time (:func:`micros_column`): ``rint(x * 1e6)``
is taken only where it provably equals the ``repr`` rule (``|x| < 1e9`` and the product
within 0.375 of an integer: the product's error is at most 0.125 there, so the exact
decimal is strictly within half a micro of that integer), and every other value goes
through ``repr`` (docs/decisions/0210-money-as-exact-micros.md gives the bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import numpy.typing as npt

from runner.errors import SourceError

#: Micros per currency unit and per cent.
MICROS = 1_000_000
MICROS_PER_CENT = 10_000

_MICRO = Decimal("0.000001")
#: Where the vectorized float path holds (see the module docstring).
_FAST_LIMIT = 1e9
_FAST_SLACK = 0.375


def to_micros(value: Any) -> int:
    """An amount as a driver hands it (Decimal, float, int, str, None) -> integer micros.

    Raises:
        SourceError: ``reason="bad_amount"`` when the value is not a number.
    """
    if value is None or value == "":
        return 0
    if isinstance(value, bool):  # a bool is an int, but never an amount
        raise SourceError(f"amount {value!r} is not a number", reason="bad_amount")
    if isinstance(value, int):
        return value * MICROS
    try:
        if isinstance(value, Decimal):
            dec = value
        elif isinstance(value, float):
            dec = Decimal(repr(value))  # the shortest decimal that reads back as this float
        else:
            dec = Decimal(str(value).strip())
        if not dec.is_finite():
            raise InvalidOperation
        return int(dec.quantize(_MICRO, ROUND_HALF_UP).scaleb(6))
    except (InvalidOperation, ValueError) as exc:
        raise SourceError(f"amount {value!r} is not a number", reason="bad_amount") from exc


def _float_micros(values: npt.NDArray[np.float64]) -> list[int]:
    scaled = values * MICROS
    rounded = np.rint(scaled)
    sure = (np.abs(values) < _FAST_LIMIT) & (np.abs(scaled - rounded) < _FAST_SLACK)
    out = rounded.astype(np.int64)
    for k in np.flatnonzero(~sure).tolist():
        out[k] = to_micros(float(values[k]))  # NaN and infinities fail here, classified
    return list(out.tolist())


def micros_column(values: Sequence[Any]) -> list[int]:
    """:func:`to_micros` of a whole column; vectorized when the driver gave floats."""
    # set(map(type, ...)) checks the column's types at C speed.
    if values and set(map(type, values)) == {float}:
        return _float_micros(np.array(values, dtype=np.float64))
    return [to_micros(v) for v in values]


def arrow_micros(column: Any) -> list[int]:
    """:func:`micros_column` of an Arrow column: doubles vectorized, anything else
    (text, decimals) value by value as :func:`to_micros`."""
    if str(column.type) == "double" and column.null_count == 0:
        return _float_micros(column.to_numpy())
    return micros_column(column.to_pylist())


def cents(micros: int) -> int:
    """Micros rounded half up (away from zero) to cents: the one rounding of a TB line."""
    whole, rest = divmod(abs(micros), MICROS_PER_CENT)
    up = 1 if rest * 2 >= MICROS_PER_CENT else 0
    return (whole + up) * (1 if micros >= 0 else -1)


def cents_array(micros: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """:func:`cents` of a whole array."""
    magnitude = (np.abs(micros) + MICROS_PER_CENT // 2) // MICROS_PER_CENT
    return np.where(micros < 0, -magnitude, magnitude).astype(np.int64)


def fmt_micros(micros: int) -> str:
    """1234550000 -> '1,234.55'; sub-cent digits shown only when there are any
    ('0.00001'), so a message states the exact amount."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole:,}.{digits}"


__all__ = [
    "MICROS",
    "MICROS_PER_CENT",
    "arrow_micros",
    "cents",
    "cents_array",
    "fmt_micros",
    "micros_column",
    "to_micros",
]

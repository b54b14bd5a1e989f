"""Amounts as the simulated ledger keeps them (integer micros) and as Plex writes them.

Micros (millionths of the currency unit) keep every sum exact and let a ledger hold
sub-cent amounts as Plex does (it keeps five decimals); they leave the ledger as decimal
strings (:func:`money`) or, over ODBC, typed as :mod:`sim.accounting.odbc` is told.
The runner has its own conversions (``runner.tb.money``): the simulator is the independent
side the trial balance is checked against, so it shares no code with it.
"""

from __future__ import annotations

#: Micros per currency unit and per cent.
MICROS = 1_000_000
CENT = 10_000


def money(micros: int) -> str:
    """Micros as Plex writes an amount: ``-1234.50``, with the sub-cent digits there are
    (``0.015``, ``0.00001``)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS)
    return f"{sign}{whole}.{f'{frac:06d}'.rstrip('0').ljust(2, '0')}"

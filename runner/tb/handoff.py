"""What the trial balance's steps hand each other within one run, in memory.

One typed object per run (:data:`TB_HANDOFF`, reached with ``ctx.handoff(TB_HANDOFF)``)
instead of string keys in a shared dict: step 6 leaves the batches it committed for step 8
(``runner/tb/loaded.py``), steps 8 and 9 their computed windows for step 10
(``runner/tb/recreate.py``), and step 7's prefetch its calls in flight for step 7's run
(``runner/tb/extract.py``). Each reader must work without its entry: a resumed run starts
with an empty hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from runner.steps import Handoff
from runner.tb.source import BalanceBatch

if TYPE_CHECKING:  # the modules that fill these import this one
    from runner.tb.prefetch import Prefetch
    from runner.tb.recreate import Computed


@dataclass(frozen=True)
class Loaded:
    """The batches step 6 committed for ``pcn`` and ``start..end`` under ``fence``."""

    pcn: int
    start: int
    end: int
    fence: int
    batches: list[BalanceBatch]


@dataclass
class TbHandoff:
    """One run's hand-off between the trial balance's steps."""

    #: Step 6 -> step 8: the committed batches by PCN.
    loaded: dict[int, Loaded] = field(default_factory=dict)
    #: Steps 8 and 9 -> step 10: computed windows by (PCN, "closed" / "open").
    computed: dict[tuple[int, str], Computed] = field(default_factory=dict)
    #: Step 7's prefetch -> step 7's run: its Plex calls in flight.
    prefetch: Prefetch | None = None


TB_HANDOFF: Final = Handoff("tb", TbHandoff)

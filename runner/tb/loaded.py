"""Step 6's closed-period balances handed to step 8 in memory, when the run goes straight on.

Step 8 needs exactly the rows step 6 has just committed to ``tb_balances``; reading a
million of them back from the warehouse cost about 1.5 s of the pipeline. So step 6 keeps
the batches it loaded in the run's hand-off (``runner/tb/handoff.py``; one per run of a
request, in this process), and step 8 takes them from there.

Step 8 reads back from the warehouse instead whenever the hand-off is not certain to hold
the warehouse's rows: the run resumed after a crash (step 6 was skipped, the hand-off is
new), or step 6 loaded another scope or under another fence. Using the memory is safe
because step 6's delete-then-insert committed exactly these rows for ``pcn`` and
``start..end`` under this run's fence, no step in between writes ``tb_balances``, and if a
newer run wrote since, step 8's own fenced load is rejected and writes nothing.

Memory: the batches are the lists step 6 read (a million rows: about 100 MB), released
when step 8 takes them.
"""

from __future__ import annotations

from runner.steps import StepContext
from runner.tb.handoff import TB_HANDOFF, Loaded
from runner.tb.source import BalanceBatch

__all__ = ["Loaded", "remember_loaded", "take_loaded"]


def remember_loaded(
    ctx: StepContext, pcn: int, start: int, end: int, batches: list[BalanceBatch]
) -> None:
    """Called by step 6 once its load of ``pcn``'s ``start..end`` has committed."""
    ctx.handoff(TB_HANDOFF).loaded[pcn] = Loaded(pcn, start, end, ctx.fence, batches)


def take_loaded(ctx: StepContext, pcn: int, start: int, end: int) -> Loaded | None:
    """Step 6's batches when they are the warehouse's rows of ``pcn`` for ``start..end``
    (its scope covers the range, same fence); ``None``: read the warehouse.

    Taking them forgets them (a rerun of step 8 in this run reads the warehouse).
    """
    loaded = ctx.handoff(TB_HANDOFF).loaded.pop(pcn, None)
    if loaded is None or loaded.fence != ctx.fence:
        return None
    if not (loaded.start <= start and end <= loaded.end):
        return None
    return loaded

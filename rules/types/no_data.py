"""``no_data``: a machine's data stopped, which is not the machine stopping.

Fires when nothing (or none of ``signals``) arrived for ``timeout_s``, or when the
collector marks samples ``no_data`` / ``bad`` (a disconnected source). A configured
machine never heard from fires ``timeout_s`` after the worker began watching it (the
engine expects the machines of its partition, see :meth:`rules.engine.Engine.expect`).
While it fires it inhibits the rules named in ``inhibits`` (default: every other rule) on
that machine, so a dead link does not read as downtime, counter jumps or a missing tool
change. It clears at the first good sample (within one tick).
"""

from __future__ import annotations

from typing import Any

from core.config.rules import NoDataRule
from core.model import Quality, Signal
from rules.alerts import Lifecycle
from rules.derive import Facts
from rules.state import MachineState
from rules.text import local_time
from rules.types.base import BaseRule, fmt


class NoData(BaseRule):
    """A condition per machine, judged on ticks; bad-quality samples fire it at once."""

    spec_model = NoDataRule
    category = "data"

    ticks = True
    sees_bad_quality = True

    def __init__(self, spec: NoDataRule, facts: Facts) -> None:
        super().__init__(spec.name)
        self.timeout = spec.timeout_s
        self.watched = frozenset(spec.signals)
        # With no list, any good signal is data: the engine's last receive time says so.
        self.inputs = self.watched
        self.facts = facts

    def on_signal(self, m: MachineState, sig: Signal, ctx: Lifecycle) -> None:
        st = self.state(m)
        if sig.quality is Quality.BAD or sig.quality is Quality.NO_DATA:
            if self.watched and sig.name not in self.watched:
                return
            st["bad"] = ctx.now
            st["bad_src"] = sig.source_ts
            if not st.get("on"):
                st["on"] = True
                ctx.active(
                    m,
                    self.name,
                    "",
                    sig.source_ts,
                    headline=f"No data from {self.facts.machine_name(m.id)}",
                    detail=f"the source reports {sig.name} as {sig.quality.value}",
                    values={"signal": sig.name, "quality": sig.quality.value},
                )
            return
        st["last"] = ctx.now
        st["last_src"] = sig.source_ts

    def on_tick(self, m: MachineState, ctx: Lifecycle) -> None:
        st = self.state(m)
        if self.watched:
            last, last_src = st.get("last", 0.0), st.get("last_src", 0.0)
        else:
            last, last_src = m.last_rx, m.last_src
        if not last:
            self._never_heard(m, st, ctx)
            return
        bad = st.get("bad", 0.0)
        silent = ctx.now - last >= self.timeout
        reported = bad >= last
        if silent or reported:
            self._fire(
                m,
                st,
                ctx,
                last_src + self.timeout,
                f"nothing received for more than {fmt(self.timeout)} s since "
                f"{local_time(last_src, self.facts.shifts.zone)}",
                {"last_received_ts": last, "last_source_ts": last_src},
            )
        elif st.get("on"):
            st["on"] = False
            ctx.inactive(m, self.name, "")

    def _never_heard(self, m: MachineState, st: dict[str, Any], ctx: Lifecycle) -> None:
        """A machine (or its watched signals) never heard from since it was first ticked."""
        since = st.get("since")
        if since is None:
            st["since"] = ctx.now
            ctx.changed = True  # checkpointed: a worker taking over keeps the same start
            return
        if ctx.now - since < self.timeout:
            return
        what = ", ".join(sorted(self.watched)) if self.watched else "anything"
        self._fire(
            m,
            st,
            ctx,
            since + self.timeout,
            f"never received {what} since watching began at "
            f"{local_time(since, self.facts.shifts.zone)}",
            {"never_received": True, "watching_since_ts": since},
        )

    def _fire(  # noqa: PLR0917 - two private call sites, in the order they have them
        self,
        m: MachineState,
        st: dict[str, Any],
        ctx: Lifecycle,
        started: float,
        detail: str,
        values: dict[str, Any],
    ) -> None:
        if st.get("on"):
            return
        st["on"] = True
        ctx.active(
            m,
            self.name,
            "",
            started,
            headline=f"No data from {self.facts.machine_name(m.id)}",
            detail=detail,
            values={**values, "timeout_s": self.timeout},
        )

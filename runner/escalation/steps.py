"""Steps ``escalation_report`` (at each shift end) and ``tool_check`` (every quarter hour)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core import keys
from core.db.schema import Episode
from core.logs import get_logger
from runner.errors import NotifyError, StepFailed
from runner.escalation import data
from runner.escalation.oee import OeeRow, OeeSettings, compute
from runner.escalation.render import (
    EscalationData,
    figures,
    render_html,
    render_text,
    title,
)
from runner.escalation.shift import DAY, ShiftWindow, Span, day_window, shift_window
from runner.escalation.signals import SignalHistory, read_history
from runner.escalation.xlsx import write_xlsx
from runner.notify import Attachment, Message
from runner.steps import StepContext, StepResult
from runner.tb.report import XLSX_MIME

log = get_logger(__name__)


def _deliver(ctx: StepContext, to: list[str], message: Message, *, teams: bool) -> list[str]:
    """Mail and post ``message``; the channels it went to. A failure fails the step."""
    sent = []
    try:
        if to:
            if ctx.services.mailer is None:
                raise StepFailed("recipients are configured but runner.smtp is not")
            ctx.services.mailer.send(to, message)
            sent.append(f"mail to {len(to)}")
        if teams:
            if ctx.services.teams is None:
                raise StepFailed("teams is enabled but runner.teams.webhook_url is not set")
            ctx.services.teams.post(message)
            sent.append("teams")
    except NotifyError as exc:
        raise StepFailed(f"delivery failed: {exc}", reason=exc.reason) from exc
    return sent


class EscalationReport:
    name = "escalation_report"

    @staticmethod
    def _oee(
        ctx: StepContext,
        window: ShiftWindow,
        machines: dict[str, str],
        downtime: dict[str, list[Span]],
    ) -> list[OeeRow]:
        cfg = ctx.cfg.runner.escalation
        partitions = ctx.cfg.streams.partitions
        history = (
            read_history(
                ctx.services.redis,
                partitions,
                window.start,
                window.end,
                list(machines),
                archive=ctx.services.archive,
            )
            if ctx.services.redis is not None
            else SignalHistory()
        )
        fastest = {
            m: spec.fastest_cycle_time_s
            for m in machines
            if (spec := ctx.cfg.rules.machine_spec(m)).fastest_cycle_time_s is not None
        }
        settings = OeeSettings(
            standard_cycle_s=dict(cfg.standard_cycle_s),
            rules_fastest_s=fastest,
            min_cycle_s=ctx.cfg.rules.min_cycle_time_s,
            setup_modes=frozenset(cfg.setup_modes),
        )
        if history.truncated or history.covered_from:
            # Partial figures are labelled in the report; the log says why, once per run.
            log.warning(
                "escalation_signals_partial",
                shift=window.name,
                truncated=history.truncated,
                partitions_late=len(history.covered_from),
            )
        return [
            compute(
                machine,
                name,
                window,
                covered_from=history.covered_from.get(keys.partition_of(machine, partitions)),
                downtime=downtime.get(machine, []),
                signals=history.machine(machine),
                cfg=settings,
                truncated=history.truncated,
            )
            for machine, name in machines.items()
        ]

    def run(self, ctx: StepContext) -> StepResult:
        cfg = ctx.cfg.runner.escalation
        now = ctx.services.clock()
        params = ctx.params
        zone = ZoneInfo(ctx.cfg.plant.timezone)
        end = datetime.fromisoformat(params["end"]) if params.get("end") else None
        if end is not None and end.tzinfo is None:
            end = end.replace(tzinfo=zone)  # a bare time is plant time, as shifts are
        if params.get("day"):
            window = day_window(cfg.shifts, date.fromisoformat(params["day"]), zone)
        else:
            window = shift_window(cfg.shifts, zone, now=now, name=params.get("shift"), end=end)
        machines = {m.id: m.display_name for m in ctx.cfg.machines}
        with ctx.sessions() as session:
            tickets = data.open_tickets(session, cfg, now)
            recurring = data.recurring(session, cfg, now)
            tools = data.tools_short(session, cfg, window)
            downtime = data.downtime_spans(session, cfg, window)
        oee = self._oee(ctx, window, machines, downtime)
        report = EscalationData(
            ctx.cfg.plant.name, now, window, tickets, recurring, tools, oee, machines
        )
        html = render_html(report)
        folder = ctx.output_dir()
        # A shift is named by the date it ends, a day by its own date.
        dated = window.start if window.name == DAY else window.end
        stem = f"Escalation-{window.name}-{window.local(dated):%Y-%m-%d}"
        html_path = folder / f"{stem}.html"
        html_path.write_text(html, encoding="utf-8")
        xlsx_path = folder / f"{stem}.xlsx"
        write_xlsx(xlsx_path, report)
        (folder / f"{stem}.json").write_text(
            json.dumps(figures(report), indent=1, ensure_ascii=False), encoding="utf-8"
        )
        ctx.set_result(html_path)
        reached = {t.level for t in tickets if t.level}
        levels = sorted(cfg.levels, key=lambda lv: lv.after_hours)
        to = list(cfg.to)
        for i, level in enumerate(levels, start=1):
            if i in reached:
                to += [a for a in level.to if a not in to]
        message = Message(
            subject=title(report),
            text=render_text(report),
            html=html,
            attachments=(Attachment(xlsx_path.name, xlsx_path.read_bytes(), XLSX_MIME),),
            facts=(
                ("Shift", f"{window.name} ending {report.when(window.end)}"),
                ("Open tickets", str(len(tickets))),
                ("Past SLA", str(len(report.breached))),
                ("Recurring", str(len(recurring))),
            ),
        )
        sent = _deliver(ctx, to, message, teams=cfg.teams)
        return StepResult(
            len(tickets), f"{html_path.name}; " + (", ".join(sent) or "not delivered")
        )


class ToolCheck:
    """The quarter-hour check: tools that did not reach tool life since the last check,
    and tool changes due within the window. Sends only when there is something to say."""

    name = "tool_check"

    def run(self, ctx: StepContext) -> StepResult:
        cfg = ctx.cfg.runner.escalation
        now = ctx.services.clock()
        minutes = int(ctx.params.get("window_minutes", 15))
        since = now - timedelta(minutes=minutes)
        with ctx.sessions() as session:
            shorts = list(
                session.scalars(
                    select(Episode)
                    .where(
                        Episode.rule_type.in_(cfg.tool_life_rule_types),
                        Episode.started_at >= since,
                    )
                    .order_by(Episode.started_at)
                )
            )
        due: list[tuple[str, float]] = []
        if ctx.services.redis is not None:
            # redis-py types a reply as "awaitable or anything"; withscores gives pairs.
            pairs = cast(
                "list[tuple[str, float]]",
                ctx.services.redis.zrangebyscore(
                    keys.UPCOMING_TOOL_CHANGES, "-inf", minutes, withscores=True
                ),
            )
            due = [(str(member), float(score)) for member, score in pairs]
        if not shorts and not due:
            return StepResult(0, "nothing to report")
        names = {m.id: m.display_name for m in ctx.cfg.machines}
        lines = [f"Tooling Issue: {e.summary}" for e in shorts]
        for member, score in due:  # soonest first: overdue tools (below zero) lead
            machine, _, tool = member.partition("|")
            name = names.get(machine, machine)
            if score < 0:
                lines.append(f"Tool change OVERDUE: {name} tool {tool}, {-score:.0f} min past life")
            else:
                lines.append(f"Upcoming tool change: {name} tool {tool} in {score:.0f} min")
        subject = lines[0] if len(lines) == 1 else f"Tooling Issues: {len(lines)}"
        message = Message(subject=subject, text="\n".join(lines))
        sent = _deliver(ctx, list(cfg.to), message, teams=cfg.teams)
        return StepResult(len(lines), f"{len(lines)} items; " + (", ".join(sent) or "not sent"))

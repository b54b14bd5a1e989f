"""Steps ``escalation_report`` (at each shift end) and ``tool_check`` (every quarter hour)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core import keys
from core.db.schema import Episode
from runner.errors import NotifyError, StepFailed
from runner.escalation import data
from runner.escalation.oee import SignalHistory, oee_rows, read_history
from runner.escalation.render import EscalationData, render_html, title, write_xlsx
from runner.notify import Attachment, Message
from runner.steps import StepContext, StepResult
from runner.tb.report import XLSX_MIME


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

    def run(self, ctx: StepContext) -> StepResult:
        cfg = ctx.cfg.runner.escalation
        now = ctx.services.clock()
        params = ctx.params
        end = datetime.fromisoformat(params["end"]) if params.get("end") else None
        window = data.shift_window(
            cfg.shifts,
            ZoneInfo(ctx.cfg.plant.timezone),
            now=now,
            name=params.get("shift"),
            end=end,
        )
        with ctx.sessions() as session:
            tickets = data.open_tickets(session, cfg, now)
            recurring = data.recurring(session, cfg, now)
            tools = data.tools_short(session, cfg, window)
            downtime = data.downtime_hours(session, cfg, window)
        machines = [m.id for m in ctx.cfg.machines]
        history = (
            read_history(ctx.services.redis, ctx.cfg.streams.partitions, window)
            if ctx.services.redis is not None
            else None
        )
        oee = oee_rows(
            machines,
            window,
            downtime_h=downtime,
            history=history or SignalHistory(),
            standard_cycle_s=cfg.standard_cycle_s,
            partitions=ctx.cfg.streams.partitions,
        )
        report = EscalationData(ctx.cfg.plant.name, now, window, tickets, recurring, tools, oee)
        html = render_html(report)
        folder = ctx.output_dir()
        stem = f"Escalation-{window.name}-{window.end:%Y-%m-%d}"
        html_path = folder / f"{stem}.html"
        html_path.write_text(html, encoding="utf-8")
        xlsx_path = folder / f"{stem}.xlsx"
        write_xlsx(xlsx_path, report)
        ctx.set_result(html_path)
        reached = {t.level for t in tickets if t.level}
        levels = sorted(cfg.levels, key=lambda lv: lv.after_hours)
        to = list(cfg.to)
        for i, level in enumerate(levels, start=1):
            if i in reached:
                to += [a for a in level.to if a not in to]
        message = Message(
            subject=title(report),
            text=(
                f"{len(tickets)} open tickets ({len(report.breached)} past SLA), "
                f"{len(recurring)} recurring episodes, {len(tools)} machines with tools "
                "not reaching tool life. The full report is attached."
            ),
            html=html,
            attachments=(Attachment(xlsx_path.name, xlsx_path.read_bytes(), XLSX_MIME),),
            facts=(
                ("Shift", f"{window.name} ending {window.end:%Y-%m-%d %H:%M}"),
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
            due = [
                (str(member), float(score))
                for member, score in ctx.services.redis.zrangebyscore(
                    keys.UPCOMING_TOOL_CHANGES, "-inf", minutes, withscores=True
                )
            ]
        if not shorts and not due:
            return StepResult(0, "nothing to report")
        lines = [f"Tooling Issue: {e.summary}" for e in shorts]
        lines += [
            f"Upcoming tool change: {member.replace('|', ' tool ')} in {score:.0f} min"
            for member, score in due
        ]
        subject = lines[0] if len(lines) == 1 else f"Tooling Issues: {len(lines)}"
        message = Message(subject=subject, text="\n".join(lines))
        sent = _deliver(ctx, list(cfg.to), message, teams=cfg.teams)
        return StepResult(len(lines), f"{len(lines)} items; " + (", ".join(sent) or "not sent"))

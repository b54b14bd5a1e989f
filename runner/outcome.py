"""The one message of each finished request: "TrialBalance Pipeline Success" or "... Failure".

Sent at most once per request: the sender first claims ``notified_at`` in the database,
so a rerun after a crash, or two runners finishing the same request, never send twice. A
failure names the failed step and its error; every message lists the steps with their
status, rows and durations (the script history of the run).
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.config import RepsysConfig
from core.db.schema import ReportRequestRow, ReportRun
from core.logs import get_logger
from runner import history
from runner.errors import NotifyError
from runner.metrics import RunnerMetrics
from runner.notify import Message
from runner.steps import Services

log = get_logger(__name__)

#: How the plants named their pipelines in the subject line.
TITLES = {"tb": "TrialBalance", "escalation": "Escalation", "tool_check": "ToolCheck"}


def subject(kind: str, ok: bool) -> str:
    title = TITLES.get(kind) or "".join(part.title() for part in kind.split("_"))
    return f"{title} Pipeline {'Success' if ok else 'Failure'}"


def build_message(
    request: ReportRequestRow,
    run: ReportRun | None,
    sessions: sessionmaker[Session],
    *,
    ok: bool,
    failed_step: str | None,
    error: str | None,
) -> Message:
    lines = [
        f"Request: {request.name} ({request.id})",
        f"Requested by: {request.requester or '-'}",
    ]
    facts: list[tuple[str, str]] = [("Request", request.name)]
    if run is not None:
        lines.append(f"Run: fence {run.fence} on {run.runner}")
        lines.append("Steps:")
        for step in history.step_records(sessions, run.id):
            took = ""
            if step.finished_at is not None and step.started_at is not None:
                took = f" {(step.finished_at - step.started_at).total_seconds():.1f} s"
            rows = f" {step.rows} rows" if step.rows is not None else ""
            lines.append(f"  {step.ordinal:2d}. {step.step}: {step.status}{rows}{took}")
    if failed_step:
        lines.append(f"Failed step: {failed_step}")
        facts.append(("Failed step", failed_step))
    if error:
        lines.append(f"Error: {error}")
        facts.append(("Error", error[:300]))
    if ok and request.result_path:
        lines.append(f"Report: {request.result_path}")
        facts.append(("Report", request.result_path))
    return Message(subject=subject(request.kind, ok), text="\n".join(lines), facts=tuple(facts))


def notify_outcome(
    cfg: RepsysConfig,
    sessions: sessionmaker[Session],
    *,
    services: Services,
    metrics: RunnerMetrics | None,
    request: ReportRequestRow,
    run: ReportRun | None,
    ok: bool,
    failed_step: str | None = None,
    error: str | None = None,
) -> bool:
    """Send the request's outcome on its pipeline's channels, once. True if this call sent."""
    pipeline = cfg.runner.pipelines.get(request.kind)
    channels = pipeline.notify if pipeline is not None else ["email"]
    if not channels:
        return False
    if not history.claim_notification(sessions, request.id):
        return False
    message = build_message(request, run, sessions, ok=ok, failed_step=failed_step, error=error)
    recipients = list(cfg.runner.notify_to)
    if "@" in request.requester and request.requester not in recipients:
        recipients.append(request.requester)
    for channel in channels:
        try:
            if channel == "email":
                if services.mailer is None or not recipients:
                    continue
                services.mailer.send(recipients, message)
            elif channel == "teams":
                if services.teams is None:
                    continue
                services.teams.post(message)
        except NotifyError as exc:
            if metrics is not None:
                metrics.notifications.labels(channel=channel, outcome="failed").inc()
            log.error(
                "report_notify_failed",
                request=request.id,
                channel=channel,
                reason=exc.reason,
                error=str(exc),
            )
            continue
        if metrics is not None:
            metrics.notifications.labels(channel=channel, outcome="sent").inc()
        log.info("report_notified", request=request.id, channel=channel, subject=message.subject)
    return True

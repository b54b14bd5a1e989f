"""The web app's own metrics, built on an injected registry (one per process or test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebMetrics:
    """Requests, logins, filed tickets, report requests, rejected input, live listeners.

    Labels stay bounded: ``route`` is the route's path template (``/tickets/{ticket_id}``),
    never the concrete URL; ``field``, ``category`` and ``kind`` come from fixed lists
    (a report's kind is counted only once the runner knows it).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "repsys_web_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "repsys_web_request_duration_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.logins = Counter(
            "repsys_web_logins_total",
            "Login attempts by method (password, badge, proxy, token) and result.",
            ["method", "result"],
            registry=registry,
        )
        self.tickets_filed = Counter(
            "repsys_web_tickets_filed_total",
            "Tickets operators filed through the web form or the API, by category.",
            ["category"],
            registry=registry,
        )
        self.form_rejections = Counter(
            "repsys_web_form_rejections_total",
            "Form submissions rejected, by form and first offending field.",
            ["form", "field"],
            registry=registry,
        )
        self.report_requests = Counter(
            "repsys_web_report_requests_total",
            "Report requests by kind and result: created, same (an identical recent one "
            "returned) or rate_limited (over web.reports).",
            ["kind", "result"],
            registry=registry,
        )
        self.csrf_rejections = Counter(
            "repsys_web_csrf_rejections_total",
            "State-changing requests refused for a missing or wrong CSRF token.",
            registry=registry,
        )
        self.live_listeners = Gauge(
            "repsys_web_live_listeners",
            "Browsers currently following the report queue (server-sent events).",
            registry=registry,
        )

"""/metrics, /healthz and /readyz of every long-running process."""

from __future__ import annotations

import httpx
from prometheus_client import Counter

from core.metrics import new_registry, sample
from core.observability import ObservabilityServer


def test_endpoints_serve_metrics_health_and_readiness() -> None:
    registry = new_registry()
    counter = Counter("repsys_test_things_total", "Things.", registry=registry)
    counter.inc(3)
    state = {"ready": False}
    server = ObservabilityServer(registry, ready=lambda: (state["ready"], "redis not connected"))
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200
        assert "repsys_test_things_total 3.0" in metrics.text
        assert httpx.get(f"{base}/healthz").status_code == 200
        not_ready = httpx.get(f"{base}/readyz")
        assert (not_ready.status_code, not_ready.text) == (503, "redis not connected\n")
        state["ready"] = True
        assert httpx.get(f"{base}/readyz").status_code == 200
        assert httpx.get(f"{base}/nope").status_code == 404
    finally:
        server.stop()
    assert sample(registry, "repsys_test_things_total") == 3.0
    assert sample(registry, "repsys_absent_total") == 0.0

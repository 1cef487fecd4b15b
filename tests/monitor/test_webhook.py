"""The alert webhook: POSTs each change as JSON, retries with back-off, gives up, never blocks, hides the URL."""

from __future__ import annotations

import json

import httpx
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.monitor.alerts import Alert, AlertChange
from codex_node.monitor.webhook import QUEUE_SIZE, AlertWebhook
from codex_node.utils.redact import forget_all

URL = "https://hooks.example.test/v1/s3cr3t-t0ken-value?key=abcdef123"
CHANGE = AlertChange(Alert("gas_low", "critical", "gas balance 1 wei", since=10), active=True, at=10)


def webhook(handler: httpx.MockTransport, slept: list[float], registry: CollectorRegistry) -> AlertWebhook:
    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    return AlertWebhook(
        URL, node_id="n1", registry=registry, transport=handler, sleep=fake_sleep, attempts=3, first_backoff=1.0
    )


async def test_a_change_is_posted_as_json() -> None:
    bodies: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    registry = CollectorRegistry()
    hook = webhook(httpx.MockTransport(handle), [], registry)
    await hook.start()
    hook.notify(CHANGE)
    await hook.drain()
    await hook.stop()
    assert bodies == [
        {
            "alert": "gas_low",
            "severity": "critical",
            "message": "gas balance 1 wei",
            "active": True,
            "since": 10,
            "at": 10,
            "node": "n1",
        }
    ]
    assert registry.get_sample_value("codex_alert_webhook_posts_total", {"result": "ok"}) == 1


async def test_failures_are_retried_with_growing_back_off_then_dropped_and_logged_without_the_secret() -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    registry = CollectorRegistry()
    slept: list[float] = []
    hook = webhook(httpx.MockTransport(handle), slept, registry)
    try:
        await hook.start()
        with capture_logs() as logs:
            hook.notify(CHANGE)
            await hook.drain()
        await hook.stop()
    finally:
        forget_all()
    assert len(calls) == 3
    assert slept == [1.0, 2.0]
    assert registry.get_sample_value("codex_alert_webhook_posts_total", {"result": "failed"}) == 1
    text = json.dumps(logs)
    assert "s3cr3t-t0ken-value" not in text
    assert "abcdef123" not in text
    assert "hooks.example.test" in text  # the host stays, so the operator knows which hook failed


async def test_notify_never_waits_and_drops_the_oldest_when_the_queue_is_full() -> None:
    registry = CollectorRegistry()
    hook = webhook(httpx.MockTransport(lambda r: httpx.Response(200)), [], registry)  # not started: nothing sends
    for _ in range(QUEUE_SIZE + 3):
        hook.notify(CHANGE)
    assert registry.get_sample_value("codex_alert_webhook_posts_total", {"result": "dropped"}) == 3
    forget_all()

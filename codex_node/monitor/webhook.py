"""POST each alert change to ``--alert-webhook URL`` as JSON, in the background.

Never blocks the node: :meth:`AlertWebhook.notify` only queues (a bounded queue; when it is full the oldest
change is dropped and counted). One task owned by the webhook sends them in order, each with a bounded timeout
and up to ``attempts`` tries with exponential back-off; a change that still fails is logged and dropped. The URL
may hold a secret (a token in its path or query): logs show it only through ``utils.redact.redact_url``, and the
URL is registered so that library errors quoting it are masked too.

Body: ``{"alert": key, "severity", "message", "active": bool, "since", "at", "node": node id}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter

from codex_node.monitor.alerts import AlertChange
from codex_node.utils.redact import redact_text, redact_url, register_url
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

QUEUE_SIZE = 100
TIMEOUT = 5.0
ATTEMPTS = 4
FIRST_BACKOFF = 1.0

Sleep = Callable[[float], Awaitable[None]]


class AlertWebhook:
    """A part: ``start`` runs the sender task, ``stop`` cancels it (queued changes are dropped)."""

    def __init__(
        self,
        url: str,
        *,
        node_id: str = "",
        registry: CollectorRegistry,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = TIMEOUT,
        attempts: int = ATTEMPTS,
        first_backoff: float = FIRST_BACKOFF,
    ) -> None:
        register_url(url)
        self._url = url
        self._shown = redact_url(url)
        self._node_id = node_id
        self._transport = transport
        self._sleep = sleep
        self._timeout = timeout
        self._attempts = attempts
        self._first_backoff = first_backoff
        self._queue: asyncio.Queue[AlertChange] = asyncio.Queue(QUEUE_SIZE)
        self._tasks = TrackedTasks("alert webhook")
        self.sent = Counter(
            "codex_alert_webhook_posts",
            "Alert changes posted to --alert-webhook, by result",
            ["result"],
            registry=registry,
        )

    def notify(self, change: AlertChange) -> None:
        """Queue ``change`` for sending (an :data:`~codex_node.monitor.alerts.AlertListener`); never waits."""
        if self._queue.full():
            self._queue.get_nowait()
            self.sent.labels("dropped").inc()
            log.warning("alert webhook queue full: oldest change dropped", webhook=self._shown)
        self._queue.put_nowait(change)

    async def start(self) -> None:
        self._tasks.spawn(self._run(), name="alert webhook")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def drain(self) -> None:
        """Wait until every queued change was sent or given up (tests)."""
        await self._queue.join()

    async def _run(self) -> None:
        async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout) as client:
            while True:
                change = await self._queue.get()
                try:
                    await self._send(client, change)
                finally:
                    self._queue.task_done()

    async def _send(self, client: httpx.AsyncClient, change: AlertChange) -> None:
        body = payload(change, self._node_id)
        delay = self._first_backoff
        for attempt in range(1, self._attempts + 1):
            try:
                response = await client.post(self._url, json=body)
                if response.status_code < 300:
                    self.sent.labels("ok").inc()
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as e:
                problem = redact_text(f"{type(e).__name__}: {e}")
            if attempt < self._attempts:
                log.info("alert webhook failed; retrying", webhook=self._shown, attempt=attempt, error=problem)
                await self._sleep(delay)
                delay *= 2
            else:
                self.sent.labels("failed").inc()
                log.warning(
                    "alert webhook failed; change dropped", webhook=self._shown, alert=change.alert.key, error=problem
                )


def payload(change: AlertChange, node_id: str) -> dict[str, Any]:
    a = change.alert
    return {
        "alert": a.key,
        "severity": a.severity,
        "message": a.message,
        "active": change.active,
        "since": a.since,
        "at": change.at,
        "node": node_id,
    }

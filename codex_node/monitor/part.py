"""Builds and starts the monitor (and the alert webhook, with ``--alert-webhook``) for the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from codex_node.clock import Clock
from codex_node.config import NodeConfig
from codex_node.errors import KVError
from codex_node.monitor.alerts import AlertBook
from codex_node.monitor.chain import ChainProbe
from codex_node.monitor.monitor import Monitor
from codex_node.monitor.samples import StorageSamples
from codex_node.monitor.webhook import AlertWebhook
from codex_node.sales.proofmargin import ProofMargins

if TYPE_CHECKING:
    from codex_node.stores.kv import KVStore
    from codex_node.stores.repostore import RepoStore
    from codex_node.utils.parts import Part

__all__ = ["Monitor", "start_monitor"]

STORE_PROBE_KEY = "meta/node/id"


async def start_monitor(
    config: NodeConfig,
    *,
    repo: RepoStore,
    kv: KVStore,
    clock: Clock,
    chain: ChainProbe | None,
    margins: ProofMargins | None,
    node_id: str,
    start_part: Callable[[str, Part], Awaitable[None]],
    registry: CollectorRegistry,
) -> Monitor:
    def store_open() -> bool:
        try:
            kv.get(STORE_PROBE_KEY)
        except KVError:
            return False
        return True

    book = AlertBook(registry)
    if config.alert_webhook is not None:
        webhook = AlertWebhook(config.alert_webhook, node_id=node_id, registry=registry)
        book.add_listener(webhook.notify)
        await start_part("alert webhook", webhook)
    monitor = Monitor(
        clock=clock,
        quota=repo.quota,
        store_open=store_open,
        data_dir=config.data_dir,
        book=book,
        samples=StorageSamples(),
        chain=chain,
        margins=margins,
    )
    await start_part("monitor", monitor)
    return monitor

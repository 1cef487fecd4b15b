"""What the chain-fault scenarios (``test_reorg.py``, ``test_transactions.py``) share: a sale of one client and one
host that holds every slot (two processes, not four: the machine is small), Hardhat's mining switched to manual,
and the chain's record of an account's transactions and of the events a node delivered.

Loopback only; every wait has a condition and a deadline.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, SlotId, slot_id
from integration.localnet import POLL, STEP_TIMEOUT, LocalNet, LocalNode
from tests.harness import hardhat

BLOCK: Final = 65_536
NODES, TOLERANCE = 3, 1
PERIOD: Final = DEV_CONFIG.proofs.period
DURATION: Final = 6 * PERIOD
EXPIRY: Final = 5 * PERIOD
PRICE: Final = 3
COLLATERAL_PER_BYTE: Final = 2
DATA_SIZE: Final = 2 * BLOCK + 321
GWEI: Final = 10**9


def slot_size() -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), DATA_SIZE).slot_size


def offer_every_slot(host: LocalNode) -> str:
    """Room and collateral for every slot of one request; the availability's id."""
    size = slot_size()
    return host.api.create_availability(
        total_size=NODES * size,
        duration=2 * DURATION,
        min_price_per_byte_per_second=1,
        total_collateral=NODES * size * COLLATERAL_PER_BYTE,
    ).id


@dataclass(frozen=True)
class Posted:
    pid: str
    rid: RequestId

    @property
    def sids(self) -> list[SlotId]:
        return [slot_id(self.rid, i) for i in range(NODES)]


def post_request(client: LocalNode) -> Posted:
    """Upload fresh data and ask for its storage (proofs due every period)."""
    cid = client.api.upload(os.urandom(DATA_SIZE))
    pid = client.api.request_storage(
        cid,
        duration=DURATION,
        price_per_byte_per_second=PRICE,
        proof_probability=1,
        collateral_per_byte=COLLATERAL_PER_BYTE,
        expiry=EXPIRY,
        nodes=NODES,
        tolerance=TOLERANCE,
    )
    return Posted(pid, RequestId(bytes.fromhex(pid.removeprefix("0x"))))


def payouts(net: LocalNet, posted: Posted) -> int:
    """What the contract pays the hosts of ``posted`` in all: each slot from its (last) fill to the request's end."""
    end = net.view.request_end(posted.rid)
    return sum((end - filled) * PRICE * slot_size() for filled in net.view.fill_times(posted.rid).values())


# --- mining by hand --------------------------------------------------------------------------------------------


class ManualMining:
    """Hardhat with automine and interval mining off: a transaction waits in the pool until :meth:`mine`."""

    def __init__(self, net: LocalNet) -> None:
        self.net = net

    def pending(self) -> list[dict[str, Any]]:
        """The transactions the next block would take (the pool's mineable ones)."""
        return list(hardhat.rpc(self.net.url, "eth_getBlockByNumber", ["pending", True])["transactions"])

    def mine(self, base_fee: int | None = None) -> None:
        """Mine one block (at ``base_fee`` wei per gas, if given: below it a transaction stays in the pool)."""
        if base_fee is not None:
            hardhat.rpc(self.net.url, "hardhat_setNextBlockBaseFeePerGas", [hex(base_fee)])
        hardhat.rpc(self.net.url, "evm_mine")

    def drive(
        self,
        done: Callable[[], bool],
        *,
        what: str,
        hold: Callable[[list[dict[str, Any]]], bool] = lambda _: False,
        within: float = 4 * STEP_TIMEOUT,
        stuck: float = 8.0,
    ) -> None:
        """Mine as a live chain would (whatever is pending, and a block a second) until ``done()``; a round where
        ``hold(pending)`` is true mines nothing (the test acts on the pool first). After ``stuck`` seconds without
        a transaction the chain moves into the next proof period (a fill and a proof wait for one)."""
        deadline = time.monotonic() + within
        last_mined = last_tx = time.monotonic()
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s driving the chain until {what}")
            dead = [n.name for n in self.net.nodes.values() if not n.process.running]
            assert not dead, f"node(s) {dead} exited while driving the chain until {what}"
            pending = self.pending()
            if not hold(pending):
                now = time.monotonic()
                if pending:
                    self.mine()
                    last_mined = last_tx = now
                elif now - last_tx > stuck:
                    self.net.advance_periods(1)
                    last_mined = last_tx = now
                elif now - last_mined >= 1.0:
                    self.mine()
                    last_mined = now
            time.sleep(POLL)


@contextmanager
def manual_mining(net: LocalNet) -> Iterator[ManualMining]:
    """Mining by hand inside the block; automine and a block a second again after it."""
    hardhat.rpc(net.url, "evm_setAutomine", [False])
    hardhat.rpc(net.url, "evm_setIntervalMining", [0])
    try:
        yield ManualMining(net)
    finally:
        hardhat.rpc(net.url, "evm_setAutomine", [True])
        hardhat.rpc(net.url, "evm_setIntervalMining", [1000])


# --- the chain's record ----------------------------------------------------------------------------------------


def block_number(net: LocalNet) -> int:
    return int(hardhat.rpc(net.url, "eth_blockNumber"), 16)


def mined_by(net: LocalNet, address: str, first_block: int) -> list[dict[str, Any]]:
    """Every transaction ``address`` sent that blocks ``first_block``.. hold, in chain order."""
    found = []
    for number in range(first_block, block_number(net) + 1):
        block = hardhat.rpc(net.url, "eth_getBlockByNumber", [hex(number), True])
        found += [tx for tx in block["transactions"] if tx["from"].lower() == address.lower()]
    return found


def function_of(net: LocalNet, tx: dict[str, Any]) -> str:
    """The marketplace function a transaction calls (``""`` for another contract's)."""
    if (tx.get("to") or "").lower() != net.view.market.address.lower():
        return ""
    fn, _ = net.view.market.decode_function_input(tx["input"])
    return str(fn.fn_name)


def nonce_count(net: LocalNet, address: str) -> int:
    return int(hardhat.rpc(net.url, "eth_getTransactionCount", [address, "latest"]), 16)


def samples(node: LocalNode, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample ``name`` on the node's ``/metrics`` (started with ``--metrics --metrics-port 0``), by labels."""
    started = node.process.find(lambda e: e.get("event") == "node started")
    url = started[-1].get("metrics") if started else None
    assert url, f"{node.name} serves no metrics: start it with --metrics --metrics-port 0"
    out = {}
    for family in text_string_to_metric_families(httpx.get(str(url), timeout=10).text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = float(sample.value)
    return out


def delivered(node: LocalNode) -> dict[str, int]:
    """Events the node's event stream delivered, by event type."""
    return {dict(k)["event"]: int(v) for k, v in samples(node, "codex_chain_events_total").items()}


def on_chain(net: LocalNet, names: tuple[str, ...]) -> dict[str, int]:
    """Events of the marketplace the chain holds now, by type (those that occurred at least once)."""
    counts = {name: len(getattr(net.view.market.events, name).get_logs(from_block=0)) for name in names}
    return {name: n for name, n in counts.items() if n}


def logged(node: LocalNode, event: str) -> list[dict[str, Any]]:
    return node.process.find(lambda e: e.get("event") == event)

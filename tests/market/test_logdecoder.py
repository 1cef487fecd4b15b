"""Marketplace logs decode into our event dataclasses: indexed arguments from topics, the rest from data."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_utils.crypto import keccak

from codex_node.market.deployment import artifact
from codex_node.market.logdecoder import ChainLog, LogDecoder
from codex_node.market.types import (
    ASK_ABI_TYPE,
    Ask,
    ProofSubmitted,
    RequestCancelled,
    RequestFailed,
    RequestFulfilled,
    RequestId,
    SlotFilled,
    SlotFreed,
    SlotId,
    SlotReservationsFull,
    StorageRequested,
)

REQUEST = RequestId(b"\x11" * 32)
SLOT = SlotId(b"\x22" * 32)
ASK = Ask(1, 2, 3, 4, 65536, 3600, 1)


@pytest.fixture(scope="module")
def decoder() -> LogDecoder:
    return LogDecoder(artifact("Marketplace")["abi"])


def log(signature: str, topics: list[bytes], data: bytes = b"") -> ChainLog:
    return ChainLog(block_number=7, log_index=3, topics=(keccak(text=signature), *topics), data=data)


@pytest.mark.parametrize(
    ("chain_log", "event"),
    [
        (
            log(
                f"StorageRequested(bytes32,{ASK_ABI_TYPE},uint64)",
                [],
                abi_encode(["bytes32", ASK_ABI_TYPE, "uint64"], [REQUEST, ASK.to_abi(), 1_700_000_600]),
            ),
            StorageRequested(REQUEST, ASK, 1_700_000_600),
        ),
        (log("RequestFulfilled(bytes32)", [REQUEST]), RequestFulfilled(REQUEST)),
        (log("RequestCancelled(bytes32)", [REQUEST]), RequestCancelled(REQUEST)),
        (log("RequestFailed(bytes32)", [REQUEST]), RequestFailed(REQUEST)),
        (log("SlotFilled(bytes32,uint64)", [REQUEST], abi_encode(["uint64"], [2])), SlotFilled(REQUEST, 2)),
        (log("SlotFreed(bytes32,uint64)", [REQUEST], abi_encode(["uint64"], [1])), SlotFreed(REQUEST, 1)),
        (
            log("SlotReservationsFull(bytes32,uint64)", [REQUEST], abi_encode(["uint64"], [0])),
            SlotReservationsFull(REQUEST, 0),
        ),
        (log("ProofSubmitted(bytes32)", [], abi_encode(["bytes32"], [SLOT])), ProofSubmitted(SLOT)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_each_marketplace_event_decodes_to_its_dataclass(decoder: LogDecoder, chain_log: ChainLog, event: Any) -> None:
    assert decoder.decode(chain_log) == event


def test_a_log_of_an_unknown_event_decodes_to_nothing(decoder: LogDecoder) -> None:
    assert decoder.decode(log("Transfer(address,address,uint256)", [b"\x00" * 32, b"\x00" * 32])) is None
    assert decoder.decode(ChainLog(1, 0, (), b"")) is None


def test_a_malformed_log_is_refused(decoder: LogDecoder) -> None:
    with pytest.raises(ValueError, match="topics"):
        decoder.decode(log("RequestFulfilled(bytes32)", []))
    with pytest.raises(ValueError, match="does not decode"):
        decoder.decode(log("SlotFilled(bytes32,uint64)", [REQUEST], b"\x01"))


def test_an_abi_without_one_of_our_events_is_refused() -> None:
    abi = [e for e in artifact("Marketplace")["abi"] if e.get("name") != "SlotFreed"]
    with pytest.raises(ValueError, match="SlotFreed"):
        LogDecoder(abi)


def test_logs_order_by_block_then_index() -> None:
    logs = [ChainLog(5, 1, (), b""), ChainLog(4, 9, (), b""), ChainLog(5, 0, (), b"")]
    assert [entry.position for entry in sorted(logs, key=lambda e: e.position)] == [(4, 9), (5, 0), (5, 1)]

"""Marketplace logs → our event dataclasses (``market/types.py``), without web3 types.

:class:`ChainLog` is a log as the event stream keeps it (position in the chain, topics, data). :class:`LogDecoder`
matches ``topics[0]`` against the ``event`` entries of the Marketplace ABI, decodes indexed arguments from the
topics and the others from the data (eth_abi), and builds the event's dataclass. A log of an event the node does
not know (a newer contract) decodes to ``None``; a log whose data does not decode raises ``ValueError``.

Pure: no I/O. Every type in ``EVENT_TYPES`` must have a builder here and an event in the ABI (checked on
construction), so an ABI change cannot silently drop events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import abi_to_signature, collapse_if_tuple
from eth_utils.crypto import keccak

from codex_node.market.types import (
    EVENT_TYPES,
    Ask,
    MarketEvent,
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


@dataclass(frozen=True, slots=True)
class ChainLog:
    """One log of the watched contract. ``(block_number, log_index)`` orders logs in the chain."""

    block_number: int
    log_index: int
    topics: tuple[bytes, ...]
    data: bytes
    block_hash: bytes | None = None
    """The hash of the log's block (the event stream's cursor keeps it to notice reorganisations)."""

    @property
    def position(self) -> tuple[int, int]:
        return (self.block_number, self.log_index)


Args = Mapping[str, Any]

_BUILDERS: dict[str, Callable[[Args], MarketEvent]] = {
    "StorageRequested": lambda a: StorageRequested(RequestId(a["requestId"]), Ask(*a["ask"]), int(a["expiry"])),
    "RequestFulfilled": lambda a: RequestFulfilled(RequestId(a["requestId"])),
    "RequestCancelled": lambda a: RequestCancelled(RequestId(a["requestId"])),
    "RequestFailed": lambda a: RequestFailed(RequestId(a["requestId"])),
    "SlotFilled": lambda a: SlotFilled(RequestId(a["requestId"]), int(a["slotIndex"])),
    "SlotFreed": lambda a: SlotFreed(RequestId(a["requestId"]), int(a["slotIndex"])),
    "SlotReservationsFull": lambda a: SlotReservationsFull(RequestId(a["requestId"]), int(a["slotIndex"])),
    "ProofSubmitted": lambda a: ProofSubmitted(SlotId(a["id"])),
}


@dataclass(frozen=True, slots=True)
class _EventSpec:
    name: str
    indexed: tuple[tuple[str, str], ...]
    """(name, type) of the indexed inputs, in topic order."""
    data: tuple[tuple[str, str], ...]
    build: Callable[[Args], MarketEvent]


class LogDecoder:
    """Decodes the Marketplace's logs. ``abi`` is the contract's ABI (the ``event`` entries are used)."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._specs: dict[bytes, _EventSpec] = {}
        for entry in abi:
            if entry.get("type") != "event" or entry["name"] not in _BUILDERS:
                continue
            inputs = entry.get("inputs", [])
            spec = _EventSpec(
                name=str(entry["name"]),
                indexed=tuple((i["name"], collapse_if_tuple(i)) for i in inputs if i.get("indexed")),
                data=tuple((i["name"], collapse_if_tuple(i)) for i in inputs if not i.get("indexed")),
                build=_BUILDERS[entry["name"]],
            )
            self._specs[keccak(text=abi_to_signature(entry))] = spec  # type: ignore[arg-type]
        missing = {t.__name__ for t in EVENT_TYPES} - {s.name for s in self._specs.values()}
        if missing:
            raise ValueError(f"the contract ABI lacks the events {sorted(missing)}")

    @property
    def topics(self) -> list[bytes]:
        """``topics[0]`` of every event this decoder knows (to filter ``eth_getLogs``)."""
        return list(self._specs)

    def decode(self, log: ChainLog) -> MarketEvent | None:
        if not log.topics:
            return None
        spec = self._specs.get(log.topics[0])
        if spec is None:
            return None
        if len(log.topics) != 1 + len(spec.indexed):
            raise ValueError(f"{spec.name} log at {log.position} has {len(log.topics)} topics")
        try:
            args: dict[str, Any] = {
                name: abi_decode([kind], topic)[0]
                for (name, kind), topic in zip(spec.indexed, log.topics[1:], strict=True)
            }
            values = abi_decode([kind for _, kind in spec.data], log.data)
        except DecodingError as e:
            raise ValueError(f"{spec.name} log at {log.position} does not decode: {e}") from e
        args.update(zip((name for name, _ in spec.data), values, strict=True))
        return spec.build(args)

"""How a dataset is cut into slots, and the roots a storage request commits to (pure: no I/O).

Layout of an unprotected dataset (what sales host today; ``data/erasure.py`` is the erasure-coded layout of
MARKETPLACE.md §2, the same shape with rows of K data and M parity blocks): the dataset's
blocks are dealt out to ``slots`` slots like cards — slot ``s`` holds blocks ``s, s+n, s+2n, …`` — and every slot
gets the same number of blocks, the missing ones at the end being zero blocks. Each block is padded with zeros
to 64 KiB (the dataset's last block is shorter), so ``slotSize = blocksPerSlot × 64 KiB``.

``Content.cid`` of a request is the manifest CID's binary form; ``Content.merkleRoot`` is the dataset root of
``codex_node.proofs`` over the slot roots in slot order.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from codex_node.data.cid import Cid, parse_cid
from codex_node.errors import InvalidCidError

BLOCK_SIZE = 64 * 1024
ZERO_BLOCK = bytes(BLOCK_SIZE)


@dataclass(frozen=True, slots=True)
class SlotLayout:
    """Which dataset blocks each of ``slots`` slots holds, for a dataset of ``dataset_blocks`` blocks."""

    dataset_blocks: int
    slots: int

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("a dataset needs at least one slot")
        if self.dataset_blocks < 1:
            raise ValueError("an empty dataset cannot be stored in slots")

    @property
    def blocks_per_slot(self) -> int:
        return -(-self.dataset_blocks // self.slots)

    @property
    def slot_size(self) -> int:
        return self.blocks_per_slot * BLOCK_SIZE

    def block_indices(self, slot_index: int) -> list[int | None]:
        """The dataset block index at each position of the slot; ``None`` where the slot holds a zero block."""
        if not 0 <= slot_index < self.slots:
            raise IndexError(f"slot {slot_index} out of range 0..{self.slots - 1}")
        out: list[int | None] = []
        for position in range(self.blocks_per_slot):
            index = slot_index + position * self.slots
            out.append(index if index < self.dataset_blocks else None)
        return out


def pad_block(data: bytes) -> bytes:
    """A block as a slot holds it: zero-padded to 64 KiB."""
    if len(data) > BLOCK_SIZE:
        raise ValueError(f"a block holds at most {BLOCK_SIZE} bytes, got {len(data)}")
    return data if len(data) == BLOCK_SIZE else data + bytes(BLOCK_SIZE - len(data))


def cid_bytes(cid: Cid) -> bytes:
    """The binary form of a CID (what ``Content.cid`` carries on chain)."""
    body = cid.text[1:].upper()  # the text form is multibase base32: "b" + RFC 4648 base32, lower case, no padding
    return base64.b32decode(body + "=" * (-len(body) % 8))


def cid_from_bytes(raw: bytes) -> Cid:
    """The CID whose binary form is ``raw``; :class:`InvalidCidError` if ``raw`` is not one."""
    if not raw:
        raise InvalidCidError("empty content CID")
    return parse_cid("b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower())


def content_cid_text(raw: bytes) -> str:
    """``Content.cid`` for people: the CID text if it is one, else ``0x``-hex (the chain accepts any bytes)."""
    try:
        return cid_from_bytes(raw).text
    except (InvalidCidError, binascii.Error, ValueError):
        return "0x" + raw.hex()

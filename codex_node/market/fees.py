"""Fees of a transaction sent again with the same nonce (pure).

A transaction still waiting in a node's pool can only be replaced by one that outbids it: geth and Hardhat ask for
at least 10 % more on both the fee cap and the tip (legacy chains: the gas price). :func:`outbid` offers the
chain's current fees or 12.5 % more than the waiting transaction, whichever is higher. A transaction the node
dropped has nothing to outbid: :func:`at_least` keeps its fees unless the chain now asks for more.

Fee fields are those of web3's ``TxParams``: ``maxFeePerGas`` and ``maxPriorityFeePerGas`` on chains with a base
fee, ``gasPrice`` on the others. :func:`outbid` and :func:`at_least` never lower a fee they were given;
:func:`capped` is the one place a fee is lowered: to the operator's cap (``--eth-max-fee-per-gas``), which no
transaction ever offers more than.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

FeeFields = dict[str, int]


def bump(fee: int) -> int:
    """``fee`` plus 12.5 % (rounded up, at least one wei more): above every node's replacement threshold."""
    return fee + -(-fee // 8) + 1


def outbid(current: Mapping[str, Any], waiting: Mapping[str, Any]) -> FeeFields:
    """Fees that replace ``waiting`` (the pool's copy, or what we sent) and pay at least ``current``."""
    return _combine(current, waiting, bump)


def at_least(current: Mapping[str, Any], sent: Mapping[str, Any]) -> FeeFields:
    """Fees for a dropped transaction: what was ``sent``, raised to ``current`` where the chain asks for more."""
    return _combine(current, sent, lambda fee: fee)


def _combine(current: Mapping[str, Any], old: Mapping[str, Any], raise_old: Callable[[int], int]) -> FeeFields:
    old_price = int(old.get("gasPrice") or 0)
    if "maxFeePerGas" not in current:  # a chain without a base fee
        return {"gasPrice": max(int(current["gasPrice"]), raise_old(old_price) if old_price else 0)}
    old_cap = int(old.get("maxFeePerGas") or old_price)
    old_tip = int(old.get("maxPriorityFeePerGas") or old_price)
    tip = max(int(current["maxPriorityFeePerGas"]), raise_old(old_tip) if old_tip else 0)
    cap = max(int(current["maxFeePerGas"]), raise_old(old_cap) if old_cap else 0, tip)
    return {"maxFeePerGas": cap, "maxPriorityFeePerGas": tip}


def capped(offer: Mapping[str, int], max_fee: int | None) -> FeeFields:
    """``offer`` with no fee above ``max_fee`` wei per gas (``None``: no cap). The tip never exceeds the fee cap."""
    out = dict(offer)
    if max_fee is None:
        return out
    for name in ("gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
        if name in out:
            out[name] = min(out[name], max_fee)
    return out


def over_cap(wanted: Mapping[str, int], max_fee: int | None) -> bool:
    """Whether ``wanted`` offers more than ``max_fee`` (the chain asks for more than the operator allows)."""
    if max_fee is None:
        return False
    return max(wanted.get("maxFeePerGas", 0), wanted.get("gasPrice", 0)) > max_fee


def raises(new: Mapping[str, int], old: Mapping[str, Any]) -> bool:
    """Whether ``new`` offers more than ``old`` on its fee cap (or gas price): a copy worth sending again."""

    def top(fees: Mapping[str, Any]) -> int:
        return int(fees.get("maxFeePerGas") or fees.get("gasPrice") or 0)

    return top(new) > top(old)

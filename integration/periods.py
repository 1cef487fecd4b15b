"""Driving a local net one proof period at a time, for the proof and validation scenarios.

A host proves its slot once per period, shortly after the period starts; a validator marks the missed proofs of a
period just after it ends. Moving the chain on before a host has tried its proof would make an honest host miss
one (and get slashed for the test's haste), and reading the chain before the validator's round would race it.
:func:`next_period` therefore waits, in the current period, until every host named has tried the proof of each of
its slots (its sale's proof record says so, whether the proof landed or, for ``--simulate-proof-failures``, was
refused), then moves the chain one second past the period's end and waits until every validator named has checked
that period (``GET /validator``: ``lastPeriod``). No wall-clock sleep: each wait has a condition and a deadline.
"""

from __future__ import annotations

from collections.abc import Iterable

from codex_node.market.types import RequestId, SlotId, SlotState, slot_id
from integration.localnet import PERIOD, LocalNet, LocalNode


def hex_id(sid: SlotId) -> str:
    return "0x" + sid.hex()


def attempted(host: LocalNode, sid: SlotId, period: int) -> bool:
    """Whether ``host`` recorded a proof round of ``sid`` for ``period`` (landed or refused)."""
    for sale in host.api.sale_history(limit=200).sales:
        if sale.slot_id.lower() == hex_id(sid) and any(p.period == period for p in sale.proofs):
            return True
    return False


def fill_period(net: LocalNet, rid: RequestId, sid: SlotId) -> int | None:
    """The proof period the slot was last filled in (``None``: never filled)."""
    for index, at in net.view.fill_times(rid).items():
        if slot_id(rid, index) == sid:
            return at // PERIOD
    return None


def next_period(
    net: LocalNet,
    *,
    provers: Iterable[tuple[LocalNode, Iterable[tuple[RequestId, SlotId]]]] = (),
    validators: Iterable[LocalNode] = (),
) -> int:
    """Let each host of ``provers`` (pairs of a host and its slots) try the current period's proof of each of its
    slots that owes one (Filled, and filled in an earlier period: the fill carried the proof of its own period),
    then move into the next period and wait until each of ``validators`` checked the one that ended. The period
    that ended."""
    period = net.now() // PERIOD
    for host, slots in provers:
        for rid, sid in slots:
            if net.view.slot_state(sid) != SlotState.FILLED or net.view.host(sid) != host.address:
                continue
            filled = fill_period(net, rid, sid)
            if filled is None or filled >= period:
                continue
            net.wait_for(
                lambda host=host, sid=sid: attempted(host, sid, period),
                what=f"{host.name} trying the proof of period {period} of slot {sid.hex()[:8]}",
            )
    net.advance_periods(1)
    for v in validators:
        net.wait_for(
            lambda v=v: (v.api.validator().last_period or -1) >= period,
            what=f"{v.name} checking period {period}",
        )
    return period

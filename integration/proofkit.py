"""Storage requests driven one proof period at a time, for the proof and validation scenarios.

A host proves its slot once per period, shortly after the period starts; a validator marks the missed proofs of a
period just after it ends. Moving the chain on before a host has tried its proof would make an honest host miss
one (and get slashed for the test's haste), and reading the chain before the validator's round would race it.
:func:`next_period` therefore waits, in the current period, until every host named has tried the proof of each of
its slots (its sale's proof record says so, whether the proof landed or, for ``--simulate-proof-failures``, was
refused), then moves the chain one second past the period's end and waits until every validator named has checked
that period (``GET /validator``: ``lastPeriod``). No wall-clock sleep: each wait has a condition and a deadline.

Also the request the scenarios share (:class:`Terms`: nodes=3, tolerance=1, the smallest erasure coding; a proof
due every period), availabilities sized to an exact number of slots (:func:`offer`), and :func:`start`, which
drives the chain until a purchase started.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import POINTERS, WRAP_MARGIN, RequestId, SlotId, SlotState, slot_id
from integration.localnet import PERIOD, LocalNet, LocalNode

BLOCK = 65_536
SLASHES = DEV_CONFIG.collateral.max_number_of_slashes
"""Marks that free a slot (each one slashes)."""
NO_ADDRESS = "0x" + "0" * 40
"""``getHost`` of a slot nobody holds."""


def slash_of(collateral: int) -> int:
    """What one mark takes of a slot's ``collateral`` (``Marketplace.markProofAsMissing``)."""
    return collateral * DEV_CONFIG.collateral.slash_percentage // 100


def reward_of(collateral: int) -> int:
    """What one mark pays the validator that sent it: its share of the slash."""
    return slash_of(collateral) * DEV_CONFIG.collateral.validator_reward_percentage // 100


@dataclass(frozen=True)
class Terms:
    """A storage request's terms (durations in proof periods)."""

    nodes: int = 3
    tolerance: int = 1
    duration_periods: int = 40
    expiry_periods: int = 10
    price: int = 1
    collateral_per_byte: int = 2

    @property
    def duration(self) -> int:
        return self.duration_periods * PERIOD

    def slot_size(self, size: int) -> int:
        return ErasureLayout(ErasureParams.from_request(self.nodes, self.tolerance), size).slot_size

    def collateral(self, slot_size: int) -> int:
        """The collateral of one slot."""
        return slot_size * self.collateral_per_byte

    def offer(self, host: LocalNode, slot_size: int, slots: int = 1) -> str:
        """An availability with room and collateral for exactly ``slots`` slots; its id."""
        return host.api.create_availability(
            total_size=slots * slot_size,
            duration=2 * self.duration,
            min_price_per_byte_per_second=self.price,
            total_collateral=slots * self.collateral(slot_size),
        ).id

    def request(self, client: LocalNode, data: bytes) -> tuple[str, RequestId, list[SlotId]]:
        """Upload ``data`` and request its storage: the purchase id, the request id, the slot ids."""
        cid = client.api.upload(data)
        pid = client.api.request_storage(
            cid,
            duration=self.duration,
            price_per_byte_per_second=self.price,
            proof_probability=1,  # a proof every period after the fill's (outside the downtime, as the contract says)
            collateral_per_byte=self.collateral_per_byte,
            expiry=self.expiry_periods * PERIOD,
            nodes=self.nodes,
            tolerance=self.tolerance,
        )
        rid = RequestId(bytes.fromhex(pid.removeprefix("0x")))
        return pid, rid, [slot_id(rid, i) for i in range(self.nodes)]


def hex_id(sid: SlotId) -> str:
    return "0x" + sid.hex()


def hosting_state(host: LocalNode, sid: SlotId) -> str:
    """The state of ``host``'s sale that filled ``sid`` (the latest such). Not ``GET /sales/slots/{id}``: that is
    the slot's latest sale, and a host that lost a slot may start another for it when it is freed (ignored when
    its availability no longer matches)."""
    for sale in host.api.sale_history(limit=200).sales:  # newest first
        if sale.slot_id.lower() == hex_id(sid) and "SaleFilled" in [t.to_state for t in sale.transitions]:
            return sale.state
    raise AssertionError(f"{host.name} has no sale that filled slot {sid.hex()}")


def attempted(host: LocalNode, sid: SlotId, period: int) -> bool:
    """Whether ``host`` recorded a proof round of ``sid`` for ``period`` (landed or refused)."""
    for sale in host.api.sale_history(limit=200).sales:
        if sale.slot_id.lower() == hex_id(sid) and any(p.period == period for p in sale.proofs):
            return True
    return False


def checked_period(validator: LocalNode, period: int) -> bool:
    """Whether ``validator`` checked ``period`` (or a later one)."""
    return (validator.api.validator().last_period or -1) >= period


def tried_or_mined(net: LocalNet, host: LocalNode, sid: SlotId, period: int) -> bool:
    """Whether ``host`` tried the proof of ``sid`` for ``period``; if not, and the slot's challenge pointer is
    within ``WRAP_MARGIN`` blocks of its wrap, one block is mined. The host waits for the wrap before it reads the
    challenge (``sales/challenge.py``), for blocks a live chain keeps mining; Hardhat here mines only on
    transactions and on the test's moves, and a host holding every slot may have none left to send."""
    if attempted(host, sid, period):
        return True
    if net.view.pointer(sid) >= POINTERS - WRAP_MARGIN:
        net.mine()
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
                partial(tried_or_mined, net, host, sid, period),
                what=f"{host.name} trying the proof of period {period} of slot {sid.hex()[:8]}",
            )
    net.advance_periods(1)
    for v in validators:
        net.wait_for(
            partial(checked_period, v, period),
            what=f"{v.name} checking period {period}",
        )
    return period


def start(
    net: LocalNet,
    client: LocalNode,
    pid: str,
    rid: RequestId,
    sids: list[SlotId],
    hosts: Iterable[LocalNode],
    validators: Iterable[LocalNode] = (),
    periods: int = 8,
) -> None:
    """Drive the chain until the purchase started, letting every host that filled a slot prove it meanwhile."""
    hosts, validators = list(hosts), list(validators)
    for _ in range(periods):
        try:
            net.wait_for(
                lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", within=10
            )
            return
        except AssertionError as e:
            if "timed out" not in str(e):
                raise
        next_period(net, provers=[(h, [(rid, s) for s in sids]) for h in hosts], validators=validators)
    raise AssertionError(f"the purchase did not start within {periods} periods")


def start_validator(net: LocalNet, name: str, *flags: str) -> LocalNode:
    """A validator node (``--validator`` and ``flags``) serving metrics."""
    return net.add_node(name, "--validator", *flags, "--metrics", "--metrics-port", "0")


def end_every_request(net: LocalNet, terms: Terms) -> None:
    """Move the chain past the end of every request made on ``terms`` so far (a test's last step, whatever
    happened in it): no slot of them is left filled or free for the next test's hosts and validators."""
    net.advance((terms.duration_periods + terms.expiry_periods + 1) * PERIOD)

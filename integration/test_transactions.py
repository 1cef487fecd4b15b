"""Issue #11, transactions under a running node on Hardhat, mined by hand: a fill the node dropped is sent again
with its nonce; a proof the base fee priced out is sent again with a higher fee, never above the operator's
``--eth-max-fee-per-gas``, waiting at the cap while the chain asks for more; the account's nonces on chain stay
whole and the sale goes on.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from integration.chainfaults import (
    GWEI,
    block_number,
    function_of,
    logged,
    manual_mining,
    mined_by,
    nonce_count,
    offer_every_slot,
    post_request,
    samples,
)
from integration.localnet import LocalNet, LocalNode
from tests.harness import hardhat

CAP = 3 * GWEI
"""The host's --eth-max-fee-per-gas: above what a transaction offers on a quiet chain (about 1 gwei of tip)."""
ABOVE_CAP = 4 * CAP
"""A base fee the host will not pay."""
BETWEEN = 2 * GWEI
"""A base fee above what the proof first offered, below the cap."""
RESENT = "transaction not mined in time: sent again with its nonce"
AT_CAP = "the chain asks for more than the fee cap: waiting at the cap"


def test_a_dropped_fill_and_a_priced_out_proof_are_sent_again_with_their_nonces_never_above_the_fee_cap(
    net: LocalNet,
) -> None:
    client = net.add_node("client")
    host = net.add_node(
        "host",
        *("--eth-resend-after", "2s", "--eth-max-fee-per-gas", str(CAP // GWEI), "--metrics", "--metrics-port", "0"),
        bootstrap=[client],
    )
    offer_every_slot(host)
    first_block, first_nonce = block_number(net), nonce_count(net, host.address)
    posted = post_request(client)

    def host_calls(pending: list[dict[str, Any]], function: str) -> list[dict[str, Any]]:
        return [tx for tx in pending if tx["from"].lower() == host.address.lower() and function_of(net, tx) == function]

    with manual_mining(net) as chain:
        # --- the node drops the host's first fill: the host sends it again with the same nonce -----------------
        dropped: list[dict[str, Any]] = []

        def drop_first_fill(pending: list[dict[str, Any]]) -> bool:
            fills = host_calls(pending, "fillSlot")
            if dropped or not fills:
                return False
            assert hardhat_drop(net, fills[0]["hash"])
            dropped.append(fills[0])
            return True

        chain.drive(
            lambda: client.api.get_purchase(posted.pid).state == "started",
            what="the request started",
            hold=drop_first_fill,
        )
        (fill,) = dropped
        resent = [e for e in logged(host, RESENT) if e["function"] == "fillSlot"]
        assert [(e["nonce"], e["reason"]) for e in resent] == [(int(fill["nonce"], 16), "dropped by the node")]
        mined = {int(tx["nonce"], 16): tx for tx in mined_by(net, host.address, first_block)}
        assert function_of(net, mined[int(fill["nonce"], 16)]) == "fillSlot"  # the same nonce, the same call
        assert mined[int(fill["nonce"], 16)]["input"] == fill["input"]

        # --- a proof waits while the base fee is above the cap, then lands at the cap ---------------------------
        proofs: list[dict[str, Any]] = []

        def catch_proof(pending: list[dict[str, Any]]) -> bool:
            proofs.extend(host_calls(pending, "submitProof"))
            return bool(proofs)

        chain.drive(lambda: bool(proofs), what="the host sent a proof", hold=catch_proof)
        proof = proofs[0]
        nonce, offered = int(proof["nonce"], 16), int(proof["maxFeePerGas"], 16)
        assert offered < BETWEEN < CAP  # the first copy could not pay the base fees below

        def sent_again_at_cap() -> bool:
            return any(e["nonce"] == nonce for e in logged(host, RESENT)) and nonce in at_cap_warnings()

        def at_cap_warnings() -> list[int]:
            return [e["nonce"] for e in logged(host, AT_CAP)]

        chain.mine(ABOVE_CAP)  # the chain asks for 2 × 12 gwei + tip: more than the cap
        net.wait_for(sent_again_at_cap, what="the proof sent again at the cap")
        copies = len([e for e in logged(host, RESENT) if e["nonce"] == nonce])
        for _ in range(3):  # it keeps waiting at the cap (re-checked every 2 s): never mined, never sent above it
            chain.mine(ABOVE_CAP)
            top = block_number(net)
            net.wait_for(partial(head_seen, host, top), what="the host saw the block")
        assert len([e for e in logged(host, RESENT) if e["nonce"] == nonce]) == copies  # nothing higher to offer
        assert nonce_count(net, host.address) <= nonce
        assert samples(host, "codex_chain_transactions_at_fee_cap")[()] >= 1
        chain.mine(BETWEEN)  # the copy at the cap can pay this base fee; the first copy cannot
        net.wait_for(lambda: nonce_count(net, host.address) > nonce, what="the proof mined")

    landed = {int(tx["nonce"], 16): tx for tx in mined_by(net, host.address, first_block)}
    assert function_of(net, landed[nonce]) == "submitProof"
    assert offered < int(landed[nonce]["maxFeePerGas"], 16) <= CAP  # a higher fee, within the cap
    every_offer = [int(tx.get("maxFeePerGas") or tx["gasPrice"], 16) for tx in landed.values()]
    assert max(every_offer) <= CAP
    for e in logged(host, RESENT):  # no copy ever offered more than the cap, however often it was sent again
        assert max(e["fees"].values()) <= CAP
    at_cap = at_cap_warnings()
    assert nonce in at_cap
    assert len(at_cap) == len(set(at_cap))  # one warning per transaction, not one per re-send
    net.wait_for(lambda: samples(host, "codex_chain_transactions_at_fee_cap")[()] == 0, what="nothing waits at the cap")

    # --- the nonce sequence on chain is whole, and the sale goes on ----------------------------------------------
    nonces = sorted(landed)
    assert nonces == list(range(first_nonce, first_nonce + len(nonces)))
    assert nonce_count(net, host.address) == first_nonce + len(nonces)
    proven = sum(net.view.proofs_submitted(s) for s in posted.sids)
    net.until(lambda: sum(net.view.proofs_submitted(s) for s in posted.sids) > proven, what="a later proof", periods=3)
    assert host.api.debug_books().balanced


def head_seen(node: LocalNode, block: int) -> bool:
    return samples(node, "codex_chain_head_block")[()] >= block


def hardhat_drop(net: LocalNet, tx_hash: str) -> bool:
    return bool(hardhat.rpc(net.url, "hardhat_dropTransaction", [tx_hash]))

"""When proofs are required (pointer, downtime, probability) and submitProof's bookkeeping."""

from __future__ import annotations

from marketplace_harness import DOWNTIME, DOWNTIME_PRODUCT, PERIOD, Chain, PostedRequest
from web3 import Web3

from codex_node.market.types import SlotId


def required(chain: Chain, sid: SlotId) -> tuple[bool, bool]:
    m = chain.marketplace.functions
    return bool(m.isProofRequired(sid).call()), bool(m.willProofBeRequired(sid).call())


def filled(chain: Chain, **kwargs: int) -> PostedRequest:
    """A started request (one slot, unless told otherwise) filled early in a period, so the next transactions
    are in the same period. Started, so it does not get cancelled while tests jump through periods."""
    kwargs = {"slots": 1, "max_slot_loss": 0, **kwargs}
    posted = chain.post_request(**kwargs)
    chain.advance_to_next_period(offset=5)
    chain.fill(posted, 0, chain.accounts.hosts[0])
    return posted


def test_pointer_and_challenge_follow_the_formula(chain: Chain) -> None:
    sid = SlotId(bytes(31) + b"\x05")
    block = chain.block_number()
    pointer = chain.marketplace.functions.getPointer(sid).call()
    assert pointer == (block % 256 + chain.current_period() * DOWNTIME_PRODUCT % 256 + 5) % 256
    hashed = chain.w3.eth.get_block(block - 1 - pointer)["hash"]
    assert bytes(chain.marketplace.functions.getChallenge(sid).call()) == Web3.keccak(bytes(hashed))


def test_challenge_is_stable_within_a_period_until_the_pointer_wraps(chain: Chain) -> None:
    sid = SlotId(bytes(32))
    chain.advance_to_period_where(sid, in_downtime=True)
    challenge = chain.marketplace.functions.getChallenge(sid).call()
    chain.mine(10)
    assert chain.marketplace.functions.getChallenge(sid).call() == challenge


def test_no_proof_is_required_in_the_period_of_the_fill(chain: Chain) -> None:
    posted = filled(chain)
    assert required(chain, posted.slot_id(0)) == (False, False)


def test_proof_is_required_outside_the_downtime(chain: Chain) -> None:
    posted = filled(chain)
    sid = posted.slot_id(0)
    chain.advance_to_period_where(sid, in_downtime=False)
    assert chain.marketplace.functions.getPointer(sid).call() >= DOWNTIME
    assert required(chain, sid) == (True, False)


def test_proof_will_be_required_during_the_downtime(chain: Chain) -> None:
    posted = filled(chain)
    sid = posted.slot_id(0)
    chain.advance_to_period_where(sid, in_downtime=True)
    assert chain.marketplace.functions.getPointer(sid).call() < DOWNTIME
    assert required(chain, sid) == (False, True)


def test_low_probability_rarely_requires_proofs(chain: Chain) -> None:
    # With probability 2**200 a challenge is required only if it is a multiple of ~2**199: never, in practice.
    posted = filled(chain, proof_probability=2**200)
    sid = posted.slot_id(0)
    for in_downtime in (False, True, False):
        chain.advance_to_period_where(sid, in_downtime=in_downtime)
        assert required(chain, sid) == (False, False)


def test_unfilled_slot_never_requires_proofs(chain: Chain) -> None:
    posted = chain.post_request()
    sid = posted.slot_id(0)
    chain.advance_to_period_where(sid, in_downtime=False)
    assert required(chain, sid) == (False, False)


def test_host_submits_one_proof_per_period(chain: Chain) -> None:
    posted = filled(chain)
    host = chain.accounts.hosts[0]
    for _ in range(2):
        chain.advance_to_next_period()
        (event,) = chain.events(chain.submit_proof(posted, 0, host), "ProofSubmitted")
        assert bytes(event["id"]) == posted.slot_id(0)
        with chain.expect_revert("ProofAlreadySubmitted"):
            chain.submit_proof(posted, 0, host)


def test_fill_counts_as_the_proof_of_its_period(chain: Chain) -> None:
    posted = filled(chain)
    assert chain.now() % PERIOD < PERIOD - 10  # still the period of the fill
    with chain.expect_revert("ProofAlreadySubmitted"):
        chain.submit_proof(posted, 0, chain.accounts.hosts[0])


def test_only_the_host_submits_proofs(chain: Chain) -> None:
    posted = filled(chain)
    chain.advance_to_next_period()
    with chain.expect_revert("ProofNotSubmittedByHost"):
        chain.submit_proof(posted, 0, chain.accounts.hosts[1])


def test_proof_for_a_slot_never_filled_reverts(chain: Chain) -> None:
    posted = filled(chain, slots=2)
    chain.advance_to_next_period()
    with chain.expect_revert("UnknownRequest"):
        chain.submit_proof(posted, 1, chain.accounts.hosts[0])


def test_invalid_submitted_proof_is_refused_and_not_counted(chain: Chain) -> None:
    posted = filled(chain)
    host = chain.accounts.hosts[0]
    chain.advance_to_next_period()
    root, slot_path, cells, cell_paths = chain.proof_for(posted, 0)
    forged = (root, slot_path, [bytes(2048)] * len(cells), cell_paths)
    with chain.expect_revert("InvalidCellProof"):
        chain.send(chain.marketplace.functions.submitProof(posted.slot_id(0), forged), host)
    chain.submit_proof(posted, 0, host)

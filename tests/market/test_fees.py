"""The fees of a transaction sent again (``market/fees.py``): pure."""

from codex_node.market.fees import at_least, bump, capped, outbid, over_cap, raises


def test_fees_outbid_a_waiting_transaction_and_never_lower_a_dropped_ones() -> None:
    waiting = {"maxFeePerGas": 1000, "maxPriorityFeePerGas": 100}
    assert outbid({"maxFeePerGas": 10, "maxPriorityFeePerGas": 1}, waiting) == {
        "maxFeePerGas": bump(1000),
        "maxPriorityFeePerGas": bump(100),
    }
    assert bump(1000) >= 1100
    assert bump(0) == 1
    assert outbid({"maxFeePerGas": 5000, "maxPriorityFeePerGas": 200}, waiting) == {
        "maxFeePerGas": 5000,
        "maxPriorityFeePerGas": 200,
    }
    assert at_least({"maxFeePerGas": 10, "maxPriorityFeePerGas": 1}, waiting) == waiting
    assert outbid({"gasPrice": 50}, {"gasPrice": 100}) == {"gasPrice": bump(100)}
    current = {"maxFeePerGas": 7, "maxPriorityFeePerGas": 2}
    assert at_least(current, {}) == current  # an unlocked account's first copy: the node chose its fees


def test_a_capped_offer_never_exceeds_the_cap_and_keeps_the_tip_within_the_fee() -> None:
    offer = {"maxFeePerGas": 3000, "maxPriorityFeePerGas": 2500}
    assert capped(offer, None) == offer
    assert capped(offer, 5000) == offer  # under the cap: as it is
    assert capped(offer, 2000) == {"maxFeePerGas": 2000, "maxPriorityFeePerGas": 2000}
    assert capped({"gasPrice": 900}, 800) == {"gasPrice": 800}
    assert offer == {"maxFeePerGas": 3000, "maxPriorityFeePerGas": 2500}  # the argument is not changed


def test_every_bump_of_a_waiting_transaction_stops_at_the_cap() -> None:
    cap = 10_000
    waiting: dict[str, int] = {"maxFeePerGas": 1000, "maxPriorityFeePerGas": 100}
    offers = []
    for _ in range(40):  # a chain that never mines it: sent again and again
        wanted = outbid({"maxFeePerGas": 10, "maxPriorityFeePerGas": 1}, waiting)
        offer = capped(wanted, cap)
        if not raises(offer, waiting):
            break  # nothing higher to offer: the sender leaves the waiting copy alone
        offers.append(offer)
        waiting = offer
    else:
        raise AssertionError("the fees kept rising")
    assert offers[-1]["maxFeePerGas"] == cap
    assert all(o["maxFeePerGas"] <= cap and o["maxPriorityFeePerGas"] <= cap for o in offers)
    assert [o["maxFeePerGas"] for o in offers] == sorted({o["maxFeePerGas"] for o in offers})  # each one higher


def test_over_cap_says_whether_the_chain_asks_for_more_than_the_cap() -> None:
    assert not over_cap({"maxFeePerGas": 10**12}, None)
    assert over_cap({"maxFeePerGas": 101, "maxPriorityFeePerGas": 1}, 100)
    assert not over_cap({"maxFeePerGas": 100, "maxPriorityFeePerGas": 1}, 100)
    assert over_cap({"gasPrice": 101}, 100)
    assert raises({"gasPrice": 2}, {"gasPrice": 1})
    assert not raises({"maxFeePerGas": 5}, {"maxFeePerGas": 5, "maxPriorityFeePerGas": 1})

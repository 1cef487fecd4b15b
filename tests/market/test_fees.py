"""The fees of a transaction sent again (``market/fees.py``): pure."""

from codex_node.market.fees import at_least, bump, outbid


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

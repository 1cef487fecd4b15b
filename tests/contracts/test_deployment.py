"""Marketplace construction: configuration checks and the configuration views; the test token."""

from __future__ import annotations

from typing import Any

import pytest
import web3
from eth_tester.exceptions import TransactionFailed
from marketplace_harness import PERIOD, Chain, dev_config, load_artifact, new_tester


def constructor_error(chain: Chain, config: tuple[Any, ...], w3: web3.Web3 | None = None) -> str | None:
    """Dry-runs the Marketplace constructor; returns the custom error it reverts with, None if it succeeds."""
    w3 = w3 or chain.w3
    artifact = load_artifact("Marketplace")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    data = factory.constructor(config, chain.token.address).data_in_transaction
    try:
        w3.eth.call({"from": chain.accounts.deployer, "data": data})
    except TransactionFailed as exc:
        return chain.error_name(exc)
    return None


def test_configuration_views_return_the_constructor_values(chain: Chain) -> None:
    m = chain.marketplace.functions
    assert m.configuration().call() == dev_config()
    assert m.token().call() == chain.token.address
    assert m.periodicity().call() == PERIOD


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"repair_reward_percentage": 101}, "RepairRewardPercentageTooHigh"),
        ({"slash_percentage": 101, "max_number_of_slashes": 1}, "SlashPercentageTooHigh"),
        ({"slash_percentage": 40, "max_number_of_slashes": 3}, "MaximumSlashingTooHigh"),
        ({"validator_reward_percentage": 101}, "ValidatorRewardPercentageTooHigh"),
        ({"proof_samples": 0}, "InvalidProofSamples"),
        ({"period": 0}, "InvalidSecondsPerPeriod"),
    ],
)
def test_invalid_configuration_is_refused(chain: Chain, overrides: dict[str, int], error: str) -> None:
    assert constructor_error(chain, dev_config(**overrides)) == error


def test_configuration_at_the_limits_is_accepted(chain: Chain) -> None:
    limits = dev_config(slash_percentage=50, max_number_of_slashes=2, repair_reward_percentage=100)
    assert constructor_error(chain, limits) is None


def test_marketplace_needs_256_blocks_of_history(chain: Chain) -> None:
    young = web3.Web3(web3.EthereumTesterProvider(new_tester()))
    assert young.eth.block_number < 256
    assert constructor_error(chain, dev_config(), w3=young) == "InsufficientBlockHeight"


def test_anyone_can_mint_test_tokens_on_a_local_chain(chain: Chain) -> None:
    before = chain.balance(chain.accounts.other)
    chain.send(chain.token.functions.mint(chain.accounts.other, 123), chain.accounts.other)
    assert chain.balance(chain.accounts.other) == before + 123

"""Revert decoding: revert data found in each client library's exception, named by selector, mapped to our types."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from eth_tester.exceptions import TransactionFailed
from eth_utils.crypto import keccak
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3RPCError

from codex_node.errors import ContractRevertError, ProofInvalidError, SlotStateMismatchError
from codex_node.market.deployment import artifact
from codex_node.market.reverts import ERROR_STRING_SELECTOR, PANIC_SELECTOR, ErrorDecoder, Revert, revert_data


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@pytest.fixture(scope="module")
def decoder() -> ErrorDecoder:
    return ErrorDecoder([artifact("Marketplace")["abi"], artifact("TestToken")["abi"]])


def test_every_custom_error_of_both_contracts_is_known(decoder: ErrorDecoder) -> None:
    assert {"SlotNotFree", "InvalidCellProof", "ReservationRequired", "MintNotAllowed"} <= decoder.names
    assert {"ERC20InsufficientAllowance", "SafeERC20FailedOperation"} <= decoder.names


def test_custom_error_without_arguments_is_named(decoder: ErrorDecoder) -> None:
    assert decoder.decode(selector("ReservationRequired()")) == Revert("ReservationRequired")


def test_custom_error_arguments_are_shown(decoder: ErrorDecoder) -> None:
    spender = "0x" + "ab" * 20
    data = selector("ERC20InsufficientAllowance(address,uint256,uint256)") + abi_encode(
        ["address", "uint256", "uint256"], [spender, 5, 7]
    )
    assert decoder.decode(data) == Revert("ERC20InsufficientAllowance", f"{spender}, 5, 7")


def test_error_string_and_panic_are_built_in(decoder: ErrorDecoder) -> None:
    assert decoder.decode(ERROR_STRING_SELECTOR + abi_encode(["string"], ["nope"])) == Revert("Error", "nope")
    assert decoder.decode(PANIC_SELECTOR + abi_encode(["uint256"], [0x11])) == Revert("Panic", "code 0x11")


def test_unknown_selector_and_empty_data_are_still_reverts(decoder: ErrorDecoder) -> None:
    assert decoder.decode(b"\xde\xad\xbe\xef") == Revert("UnknownError", "selector 0xdeadbeef")
    assert decoder.decode(b"").name == "Revert"


def test_reverts_the_node_reacts_to_get_their_market_error_type(decoder: ErrorDecoder) -> None:
    assert isinstance(decoder.decode(selector("SlotNotFree()")).to_error(), SlotStateMismatchError)
    assert isinstance(decoder.decode(selector("InvalidCellProof()")).to_error(), ProofInvalidError)
    other = decoder.decode(selector("ReservationRequired()")).to_error()
    assert isinstance(other, ContractRevertError)
    assert other.error_name == "ReservationRequired"


DATA = selector("SlotNotFree()")


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ContractCustomError("execution reverted", data="0x" + DATA.hex()), id="json-rpc hex"),
        pytest.param(
            ContractLogicError("execution reverted", data={"message": "reverted", "data": "0x" + DATA.hex()}),
            id="hardhat dict",
        ),
        pytest.param(
            Web3RPCError(
                "VM Exception",
                rpc_response={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {
                        "code": -32603,
                        "message": "reverted",
                        "data": {"message": "x", "data": "0x" + DATA.hex()},
                    },
                },  # type: ignore[typeddict-item]
            ),
            id="hardhat refused transaction",
        ),
        pytest.param(
            Web3RPCError(
                "VM Exception",
                rpc_response={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "error": {
                        "code": -32603,
                        "message": f"reverted with an unrecognized custom error (return data: 0x{DATA.hex()})",
                    },
                },  # type: ignore[typeddict-item]
            ),
            id="data only in the message",
        ),
        pytest.param(TransactionFailed(f"execution reverted: {DATA!r}"), id="eth-tester bytes repr"),
    ],
)
def test_revert_data_is_found_in_every_client_exception(exc: Exception, decoder: ErrorDecoder) -> None:
    assert revert_data(exc) == DATA
    assert isinstance(decoder.error_for(exc), SlotStateMismatchError)


def test_eth_tester_decoded_reason_comes_back_as_error_string(decoder: ErrorDecoder) -> None:
    exc = TransactionFailed("execution reverted: not enough")
    assert decoder.decode(revert_data(exc) or b"") == Revert("Error", "not enough")


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionError("refused"),
        TimeExhausted("slow"),
        Web3RPCError(
            "nonce too low",
            rpc_response={"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "nonce too low"}},
        ),  # type: ignore[typeddict-item]
    ],
)
def test_transport_and_nonce_failures_are_not_reverts(exc: Exception, decoder: ErrorDecoder) -> None:
    assert revert_data(exc) is None
    assert decoder.error_for(exc) is None


def test_a_transaction_out_of_gas_is_not_a_revert() -> None:
    """Hardhat answers ``data: "0x"`` for a transaction that ran out of gas: no contract said no."""
    error = {
        "code": -32000,
        "message": "Transaction ran out of gas",
        "data": {"message": "ran out of gas", "data": "0x"},
    }
    assert revert_data(Web3RPCError("oog", rpc_response={"jsonrpc": "2.0", "id": 1, "error": error})) is None  # type: ignore[typeddict-item]

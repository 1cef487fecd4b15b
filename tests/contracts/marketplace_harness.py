"""Drives the compiled Marketplace on an in-process eth-tester chain for the contract tests.

Only what the tests need: deploy, send transactions as named accounts, travel in time, build requests and
storage proofs, and turn reverts into the Solidity custom error's name. It is not the node's market adapter.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import web3
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from eth_utils.abi import abi_to_signature
from storage_proofs_adapter import Dataset, build_proof
from web3.contract import Contract
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from codex_node.market.types import Ask, Content, Request, RequestId, SlotId, request_id, slot_id

ARTIFACTS = Path(__file__).resolve().parents[2] / "codex_node" / "market" / "artifacts"
BLOCK_SIZE = 65536
TX_GAS = 10_000_000

# The dev configuration the contract tests run with (MarketplaceConfig as the ABI tuple).
PERIOD = 60
TIMEOUT = 30
DOWNTIME = 64
DOWNTIME_PRODUCT = 67
MAX_NUMBER_OF_SLASHES = 2
SLASH_PERCENTAGE = 20
VALIDATOR_REWARD_PERCENTAGE = 20
REPAIR_REWARD_PERCENTAGE = 10
MAX_RESERVATIONS = 3
REQUEST_DURATION_LIMIT = 30 * 24 * 3600
PROOF_SAMPLES = 5


def dev_config(**overrides: int) -> tuple[Any, ...]:
    values = {
        "repair_reward_percentage": REPAIR_REWARD_PERCENTAGE,
        "max_number_of_slashes": MAX_NUMBER_OF_SLASHES,
        "slash_percentage": SLASH_PERCENTAGE,
        "validator_reward_percentage": VALIDATOR_REWARD_PERCENTAGE,
        "period": PERIOD,
        "timeout": TIMEOUT,
        "downtime": DOWNTIME,
        "downtime_product": DOWNTIME_PRODUCT,
        "proof_samples": PROOF_SAMPLES,
        "max_reservations": MAX_RESERVATIONS,
        "request_duration_limit": REQUEST_DURATION_LIMIT,
    }
    unknown = set(overrides) - set(values)
    assert not unknown, f"unknown config keys {unknown}"
    values.update(overrides)
    v = values
    return (
        (
            v["repair_reward_percentage"],
            v["max_number_of_slashes"],
            v["slash_percentage"],
            v["validator_reward_percentage"],
        ),
        (v["period"], v["timeout"], v["downtime"], v["downtime_product"], v["proof_samples"]),
        (v["max_reservations"],),
        v["request_duration_limit"],
    )


def load_artifact(name: str) -> dict[str, Any]:
    artifact: dict[str, Any] = json.loads((ARTIFACTS / f"{name}.json").read_text())
    return artifact


def _error_selectors(*abis: Sequence[dict[str, Any]]) -> dict[bytes, str]:
    selectors = {}
    for abi in abis:
        for entry in abi:
            if entry["type"] == "error":
                selectors[keccak(text=abi_to_signature(entry))[:4]] = entry["name"]
    return selectors


def revert_data(exc: Exception) -> bytes:
    """The raw revert data of a failed call or transaction, from eth-tester or a JSON-RPC node."""
    if isinstance(exc, ContractLogicError) and exc.data is not None:
        # A JSON-RPC node (Hardhat): the data is hex, bare or inside the error object.
        data = exc.data if isinstance(exc.data, str) else exc.data["data"]
        return bytes.fromhex(data.removeprefix("0x"))
    if isinstance(exc, TransactionFailed):
        # eth-tester (through web3's provider) reports the revert data as the repr of a bytes object.
        message = str(exc.args[0]).removeprefix("execution reverted: ")
        data = ast.literal_eval(message)
        assert isinstance(data, bytes), f"not a custom error revert: {exc}"
        return data
    raise AssertionError(f"not a revert: {exc!r}")


class Reverted:
    """What `expect_revert` caught: the name of the custom error."""

    name: str | None = None


@dataclass(frozen=True)
class Accounts:
    deployer: str
    client: str
    hosts: tuple[str, ...]
    validator: str
    other: str


@dataclass(frozen=True)
class PostedRequest:
    request: Request
    dataset: Dataset

    @property
    def id(self) -> RequestId:
        return request_id(self.request)

    def slot_id(self, index: int) -> SlotId:
        return slot_id(self.id, index)

    @property
    def ask(self) -> Ask:
        return self.request.ask


@dataclass
class Chain:
    tester: EthereumTester
    w3: web3.Web3
    token: Contract
    marketplace: Contract
    accounts: Accounts
    _errors: dict[bytes, str] = field(default_factory=dict)
    _nonce: int = 0

    # --- time and blocks ---------------------------------------------------------------------------------
    #
    # View calls run in the pending block (web3's default block is set to "pending"), which is the block the
    # next transaction is mined in: a view sees exactly what the next transaction will see.

    def pending(self) -> Any:
        return self.tester.get_block_by_number("pending")

    def now(self) -> int:
        """Timestamp the next transaction (and every view call) runs at."""
        return int(self.pending()["timestamp"])

    def block_number(self) -> int:
        """Number of the block the next transaction is mined in."""
        return int(self.pending()["number"])

    def current_period(self) -> int:
        return self.now() // PERIOD

    def period_end(self, period: int) -> int:
        return (period + 1) * PERIOD

    def travel_to(self, timestamp: int) -> None:
        """The next transaction runs at ``timestamp`` (eth-tester mines one block to get there)."""
        self.tester.time_travel(timestamp)

    def advance(self, seconds: int) -> None:
        self.travel_to(self.now() + seconds)

    def mine(self, blocks: int = 1) -> None:
        """Each block advances the chain clock by one second."""
        self.tester.mine_blocks(blocks)

    def advance_to_next_period(self, offset: int = 1) -> None:
        """The next transaction runs ``offset`` seconds into the next period."""
        self.travel_to(self.period_end(self.current_period()) + offset)

    # --- transactions ------------------------------------------------------------------------------------

    def send(self, fn: Any, sender: str) -> TxReceipt:
        """Sends a transaction; a revert raises with the revert data.

        The gas is fixed because web3's estimation makes eth-tester bisect, a dozen executions per transaction.
        A mined failed transaction carries no revert data, so a failure is rolled back and replayed as a call
        in the same pending block, which raises with it.
        """
        snapshot = self.tester.take_snapshot()
        tx_hash = fn.transact({"from": sender, "gas": TX_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] == 1:
            return receipt
        self.tester.revert_to_snapshot(snapshot)
        fn.call({"from": sender})
        raise AssertionError("transaction failed, but its replay as a call did not")

    def events(self, receipt: TxReceipt, name: str, contract: Contract | None = None) -> list[Any]:
        source = contract if contract is not None else self.marketplace
        event = getattr(source.events, name)()
        return [e["args"] for e in event.process_receipt(receipt, errors=web3.logs.DISCARD)]

    def error_name(self, exc: Exception) -> str:
        """Name of the custom error (of the marketplace or the token) a revert carries."""
        data = revert_data(exc)
        return self._errors.get(data[:4], f"unknown selector 0x{data[:4].hex()}")

    @contextmanager
    def expect_revert(self, error_name: str) -> Iterator[Reverted]:
        """Fails unless the block raises a revert whose data is the custom error ``error_name``."""
        caught = Reverted()
        try:
            yield caught
        except (TransactionFailed, ContractLogicError) as exc:
            caught.name = self.error_name(exc)
        else:
            raise AssertionError(f"expected revert {error_name}, but nothing reverted")
        assert caught.name == error_name, f"expected revert {error_name}, got {caught.name}"

    # --- token -------------------------------------------------------------------------------------------

    def balance(self, account: str) -> int:
        return int(self.token.functions.balanceOf(account).call())

    def marketplace_balance(self) -> int:
        return self.balance(self.marketplace.address)

    # --- requests ----------------------------------------------------------------------------------------

    def new_request(
        self,
        *,
        slots: int = 3,
        blocks_per_slot: int = 1,
        duration: int = 20 * PERIOD,
        expiry: int = 5 * PERIOD,
        max_slot_loss: int = 1,
        proof_probability: int = 1,
        price_per_byte_per_second: int = 1,
        collateral_per_byte: int = 2,
        slot_size: int | None = None,
        cid: bytes = b"zdj7WfakeProtectedManifestCid",
        client: str | None = None,
        merkle_root: bytes | None = None,
    ) -> PostedRequest:
        """A request over a fresh random dataset (not yet posted). Defaults: proofs due every period."""
        self._nonce += 1
        dataset = Dataset.random(slots, blocks_per_slot, seed=self._nonce)
        ask = Ask(
            proof_probability=proof_probability,
            price_per_byte_per_second=price_per_byte_per_second,
            collateral_per_byte=collateral_per_byte,
            slots=slots,
            slot_size=slot_size if slot_size is not None else blocks_per_slot * BLOCK_SIZE,
            duration=duration,
            max_slot_loss=max_slot_loss,
        )
        request = Request(
            client=client or self.accounts.client,  # type: ignore[arg-type]
            ask=ask,
            content=Content(cid=cid, merkle_root=merkle_root if merkle_root is not None else dataset.root),
            expiry=expiry,
            nonce=self._nonce.to_bytes(32, "big"),
        )
        return PostedRequest(request=request, dataset=dataset)

    def request_storage(self, posted: PostedRequest, sender: str | None = None) -> TxReceipt:
        fn = self.marketplace.functions.requestStorage(posted.request.to_abi())
        return self.send(fn, sender or self.accounts.client)

    def post_request(self, **kwargs: Any) -> PostedRequest:
        posted = self.new_request(**kwargs)
        self.request_storage(posted)
        return posted

    # --- slots and proofs --------------------------------------------------------------------------------

    def proof_for(self, posted: PostedRequest, index: int, *, challenge: bytes | None = None) -> tuple[Any, ...]:
        sid = posted.slot_id(index)
        if challenge is None:
            challenge = bytes(self.marketplace.functions.getChallenge(sid).call())
        return build_proof(posted.dataset, index, challenge, sid, PROOF_SAMPLES)

    def reserve(self, posted: PostedRequest, index: int, host: str) -> TxReceipt:
        return self.send(self.marketplace.functions.reserveSlot(posted.id, index), host)

    def fill(self, posted: PostedRequest, index: int, host: str, *, reserve: bool = True) -> TxReceipt:
        if reserve:
            self.reserve(posted, index, host)
        proof = self.proof_for(posted, index)
        return self.send(self.marketplace.functions.fillSlot(posted.id, index, proof), host)

    def fill_all(self, posted: PostedRequest) -> list[TxReceipt]:
        hosts = self.accounts.hosts
        return [self.fill(posted, i, hosts[i % len(hosts)]) for i in range(posted.ask.slots)]

    def submit_proof(self, posted: PostedRequest, index: int, host: str) -> TxReceipt:
        proof = self.proof_for(posted, index)
        return self.send(self.marketplace.functions.submitProof(posted.slot_id(index), proof), host)

    def pointer_at(self, slot: SlotId, period: int, block_number: int) -> int:
        """The contract's pointer formula, for a block that has not been mined yet."""
        return (block_number % 256 + (period * DOWNTIME_PRODUCT) % 256 + int.from_bytes(slot, "big") % 256) % 256

    def advance_to_period_where(self, slot: SlotId, in_downtime: bool, offset: int = 1) -> int:
        """Jumps to the start of the first later period in which the slot's pointer is (or is not) in the
        downtime for the next transaction; returns that period."""
        block = self.block_number() + 1  # the jump mines one block
        period = self.current_period() + 1
        while (self.pointer_at(slot, period, block) < DOWNTIME) != in_downtime:
            period += 1
        self.travel_to(period * PERIOD + offset)
        return period

    def advance_to_markable(self, slot: SlotId, period: int, *, in_downtime: bool = False) -> None:
        """Moves the chain so that the next transaction may mark a proof of ``period`` as missing.

        That needs a time after the period's end and before its end + timeout, and a pointer (in that
        transaction's block) outside the downtime (``in_downtime`` lands inside it instead, where the proof is
        not required). Blocks are mined before the jump where possible, since each costs a second and the
        window after the period is only ``timeout`` long.
        """
        end = self.period_end(period)
        assert self.now() <= end, "too late to mark this period"
        # After `extra` mined blocks and the block the jump mines, the marking transaction is in block
        # pending + extra + 1.
        first_block = self.block_number() + 1
        extra = next(
            e for e in range(256) if (self.pointer_at(slot, period, first_block + e) < DOWNTIME) == in_downtime
        )
        before = min(extra, end - self.now())
        after = extra - before
        assert after <= TIMEOUT - 2, "not enough time left to move the pointer"
        if before:
            self.mine(before)
        self.travel_to(end + 1)
        if after:
            self.mine(after)

    def mark_missing(self, posted: PostedRequest, index: int, period: int) -> TxReceipt:
        sid = posted.slot_id(index)
        self.advance_to_markable(sid, period)
        return self.send(self.marketplace.functions.markProofAsMissing(sid, period), self.accounts.validator)


def deploy(tester: EthereumTester, config: tuple[Any, ...] | None = None) -> Chain:
    """Deploys TestToken and Marketplace (mining past block 256 first), funds and approves every account."""
    w3 = web3.Web3(web3.EthereumTesterProvider(tester))
    w3.eth.default_block = "pending"
    accounts = list(w3.eth.accounts)
    named = Accounts(
        deployer=accounts[0],
        client=accounts[1],
        hosts=tuple(accounts[2:6]),
        validator=accounts[6],
        other=accounts[7],
    )
    token_artifact = load_artifact("TestToken")
    market_artifact = load_artifact("Marketplace")

    if w3.eth.block_number <= 256:
        tester.mine_blocks(257 - w3.eth.block_number)
    # Genesis is stamped with the wall clock and a new block takes max(wall clock, parent + 1). Jumping a
    # month ahead makes every later timestamp depend on the test's own steps only.
    tester.time_travel((w3.eth.get_block("latest")["timestamp"] // 3600 + 30 * 24) * 3600)
    token_factory = w3.eth.contract(abi=token_artifact["abi"], bytecode=token_artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(
        token_factory.constructor().transact({"from": named.deployer, "gas": TX_GAS})
    )
    token = w3.eth.contract(address=receipt["contractAddress"], abi=token_artifact["abi"])

    market_factory = w3.eth.contract(abi=market_artifact["abi"], bytecode=market_artifact["bytecode"])
    tx = market_factory.constructor(config or dev_config(), token.address).transact(
        {"from": named.deployer, "gas": TX_GAS}
    )
    receipt = w3.eth.wait_for_transaction_receipt(tx)
    marketplace = w3.eth.contract(address=receipt["contractAddress"], abi=market_artifact["abi"])

    chain = Chain(
        tester=tester,
        w3=w3,
        token=token,
        marketplace=marketplace,
        accounts=named,
        _errors=_error_selectors(market_artifact["abi"], token_artifact["abi"]),
    )
    for account in accounts:
        chain.send(token.functions.mint(account, 10**30), named.deployer)
        chain.send(token.functions.approve(marketplace.address, 2**256 - 1), account)
    return chain


def new_tester() -> EthereumTester:
    return EthereumTester(PyEVMBackend())
